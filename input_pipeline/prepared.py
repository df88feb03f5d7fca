"""Prepared data (`--prepared_dir`): the on-disk format of TFRecord shards, and its reader.

input_pipeline/prepare.py writes a directory once (`main.py --mode=prepare`); this module
defines its records and streams it, as a `data.Data`, without ever holding the rows in memory.

Format 2: each record is one `tf.train.Example` holding a block of up to BLOCK_ROWS rows of one
shard, {x: the rows' float32 features as little-endian bytes, y: their uint8 labels as bytes};
only a shard's last block is short. tf.data's cost is per element, so a block, not a row, is
the unit read, shuffled and decoded (BUILD.md, "Benchmarks of the file-based path", has the
figures behind the format and the block size). `metadata.json`, written last, names the shards
and holds the counts and the fitted preprocessing.

Training streams the shards, per class: the shard files are shuffled and interleaved (a class
small enough to fit the shuffle buffer's budget is read once and its records cached: re-opening
every file at every pass of a few thousand positives cost more than the rest of the stream),
repeated, and the blocks shuffled through a bounded buffer; groups of blocks are decoded at
once, cut into windows of a fixed number of rows (`rebatch`, which absorbs the short blocks
without dropping rows), each window permuted row by row (one stateless, seeded op), and split
into chunks of `oversample_chunk` rows that `datasets.balanced_mix` mixes; then batch and
prefetch. Memory is bounded by the buffers, not by the data size.

What the shuffle mixes, and what it does not: a block's rows are fixed at prepare time, and the
rows of a block always reach the stream close together, within one window (WINDOW_ROWS) or two;
there they are permuted among the rows of the window's other blocks (WINDOW_ROWS / BLOCK_ROWS
in all), so a chunk draws its rows from many blocks. Blocks further apart than the buffer
(SHUFFLE_BUFFER rows) in the interleaved
stream are never swapped, which is why shards are filled round-robin and the file order is
shuffled on every pass. The stream is a pure function of the seed, so `skip` resumes it exactly.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from input_pipeline import datasets, preprocessing
from input_pipeline.data import SPLIT_NAMES, Data
from input_pipeline.errors import DataError

METADATA_FILE = "metadata.json"
# 3: the preprocessing holds column roles, medians and vocabularies (2 had numeric columns only;
# 2 was the first with one record per block of rows, 1 had one record per row).
FORMAT_VERSION = 3
# Rows per record: the smaller of the two block sizes that were cheapest per batch in the
# benchmarks (this and twice this). The last block of a shard is short. Readers take the
# figure from metadata.json.
BLOCK_ROWS = 128
# Rows held by each class's shuffle buffer (as SHUFFLE_BUFFER // block records): enough to mix
# the interleaved shards well, and, at a serialized row's size, small next to the memory budget
# of a large run (BUILD.md, "Benchmarks of the file-based path").
SHUFFLE_BUFFER = 100_000
# Blocks are re-permuted row by row in windows of ~WINDOW_ROWS rows (see PreparedData._chunks).
WINDOW_ROWS = 4096


# ---------------------------------------------------------------------------------------------
# Records: one tf.train.Example per block of rows.


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte = n & 0x7F
    n >>= 7
    if n:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  # Wire type 2 (length-delimited): tag, length, payload.
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_entry(key: bytes, value: bytes) -> bytes:
  # A Features map entry {key: Feature{bytes_list: BytesList{value: [value]}}}.
  feature = _field(1, _field(1, value))            # Feature.bytes_list, BytesList.value
  return _field(1, _field(1, key) + _field(2, feature))  # Features.feature map entry


def encode_block(x: np.ndarray, y: np.ndarray) -> bytes:
  """One serialized `tf.train.Example` holding a block of rows.

  The layout, {x: bytes of the rows' little-endian float32 features, row-major [rows, F];
  y: bytes of the rows' uint8 labels}, is self-describing (named features, the row count is
  len(y)), so a block may hold any number of rows: the last block of a shard is short. The bytes
  are assembled directly, with no protobuf object per block: the rows are written in one
  `tobytes` each, and a test checks they parse to the Example that protobuf itself writes.

  Args:
    x: float32 [rows, F] features.
    y: 0/1 labels [rows].
  """
  x = np.ascontiguousarray(x, dtype="<f4")
  return _field(1, _bytes_entry(b"x", x.tobytes()) +
                _bytes_entry(b"y", np.asarray(y, np.uint8).tobytes()))


BLOCK_SPEC = {"x": tf.io.FixedLenFeature([], tf.string),
              "y": tf.io.FixedLenFeature([], tf.string)}


def decode_blocks(serialized: tf.Tensor, num_features: int) -> tuple[tf.Tensor, tf.Tensor]:
  """(features [rows, F] float32, labels [rows] int32) of a vector of serialized blocks.

  One `parse_example` for all the blocks, then their bytes are joined and decoded at once, so
  the cost is per block, not per row, and blocks of different lengths need no padding.
  """
  parsed = tf.io.parse_example(serialized, BLOCK_SPEC)
  x = tf.io.decode_raw(tf.strings.reduce_join(parsed["x"]), tf.float32, little_endian=True)
  y = tf.io.decode_raw(tf.strings.reduce_join(parsed["y"]), tf.uint8)
  return tf.reshape(x, [-1, num_features]), tf.cast(y, tf.int32)


# ---------------------------------------------------------------------------------------------
# Reading.


class PreparedData(Data):
  """A prepared directory: its metadata, and streaming datasets over its shards."""

  def __init__(self, directory: str, metadata: dict):
    self.directory = directory
    self.metadata = metadata
    self.description = f"prepared {directory} ({metadata['source']})"
    self.preprocessor = preprocessing.Preprocessor(**metadata["preprocessing"])
    self.num_features = int(metadata["num_features"])
    self.block_rows = int(metadata["block_rows"])

  @classmethod
  def open(cls, directory: str, label_column: str | None = None) -> "PreparedData":
    """Reads `directory/metadata.json`; DataError if it is missing or not a prepared set."""
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.exists(path):
      raise DataError(f"--prepared_dir={directory} holds no {METADATA_FILE}; write it with "
                      "`main.py --mode=prepare --output_dir=...` (an interrupted preparation "
                      "has none)")
    try:
      with open(path) as f:
        metadata = json.load(f)
    except (OSError, ValueError) as e:
      raise DataError(f"{path} cannot be read: {e}") from None
    if metadata.get("format_version") != FORMAT_VERSION:
      raise DataError(f"{path} has format_version {metadata.get('format_version')!r}; this "
                      f"engine reads {FORMAT_VERSION}: prepare the data again")
    if label_column and metadata["label_column"] != label_column:
      raise DataError(f"--prepared_dir={directory} was prepared with label column "
                      f"'{metadata['label_column']}', not '{label_column}'")
    return cls(directory, metadata)

  def counts(self) -> dict[str, dict[str, int]]:
    return {k: dict(v) for k, v in self.metadata["counts"].items()}

  def _path(self, name: str) -> str:
    return os.path.join(self.directory, name)

  def _decode(self, serialized: tf.Tensor):
    return decode_blocks(serialized, self.num_features)

  def _chunks(self, names: list[str], *, rows: int, seed: int,
              chunk: int) -> tf.data.Dataset:
    """Infinite, shuffled (features [chunk, F], labels [chunk]) of these shard files' rows.

    Blocks are shuffled through a bounded buffer as serialized records; then groups of blocks
    are decoded together, cut into windows of a fixed number of rows (`rebatch` evens out the
    short block at each file's end without dropping its rows), each window is permuted row by
    row (stateless, seeded by the window's index: the stream is still a pure function of the
    seed, so `skip` resumes it) and split into chunks. `repeat` comes before the shuffle, so
    passes blur at their boundaries: the cost of never dropping rows of a class smaller than a
    window.

    Args:
      names: shard files of this stream.
      rows: how many rows they hold. Files of no more than SHUFFLE_BUFFER rows are read once
        and their records cached: the buffer's budget covers them, and re-reading a small
        class (e.g. 16 files of a few hundred positives each) at every pass reopened every
        file every few batches, which cost more than the rest of the stream together.
      seed: seeds the file order, the block shuffle and the row permutations.
      chunk: rows per element.
    """
    files = tf.data.Dataset.from_tensor_slices([self._path(n) for n in names])
    files = files.shuffle(len(names), seed=seed, reshuffle_each_iteration=True)
    ds = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(names), 8),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if rows <= SHUFFLE_BUFFER:
      ds = ds.cache()
    ds = ds.repeat()
    # At most about one pass of records (each file's last block is short, hence + files): a
    # buffer larger than the class would only hold rows back across passes.
    records = min(SHUFFLE_BUFFER // self.block_rows, -(-rows // self.block_rows) + len(names))
    ds = ds.shuffle(max(1, records), seed=seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(max(1, WINDOW_ROWS // self.block_rows), drop_remainder=True)
    ds = ds.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    window = chunk * max(1, WINDOW_ROWS // chunk)
    ds = ds.rebatch(window, drop_remainder=True).enumerate()

    def remix(index, rows_xy):
      order = tf.random.experimental.stateless_shuffle(
          tf.range(window), seed=tf.stack([tf.constant(seed, tf.int64), index]))
      x, y = (tf.gather(t, order) for t in rows_xy)
      return (tf.reshape(x, [window // chunk, chunk, self.num_features]),
              tf.reshape(y, [window // chunk, chunk]))
    # Unbatching a window's chunks costs less per chunk than `rebatch(chunk)` (benchmarked).
    return ds.map(remix).unbatch()

  def _pipeline_shards(self, cls: str, pipeline_id: int,
                       num_pipelines: int) -> tuple[list[str], int]:
    """(this input pipeline's training shard files of class `cls`, their row count)."""
    names = self.metadata["files"]["train"][cls]
    counts = self.metadata["shard_counts"]["train"][cls]
    mine = [(n, c) for i, (n, c) in enumerate(zip(names, counts))
            if i % num_pipelines == pipeline_id and c > 0]
    if not mine:
      raise DataError(f"input pipeline {pipeline_id} of {num_pipelines} has no training rows "
                      f"of class {cls} in {self.directory} ({len(names)} shards, "
                      f"{sum(counts)} rows of that class): prepare with more rows of that class "
                      "or fewer workers")
    return [n for n, _ in mine], sum(c for _, c in mine)

  def train_dataset(self, spec: datasets.StreamSpec) -> tf.data.Dataset:
    """The infinite training stream of (features [batch, F] float32, labels [batch] int32).

    Same contract as `datasets.train_dataset`. Input pipelines read disjoint shard files
    (shard i goes to pipeline i % num_pipelines). `skip` replays the seeded stream up to the
    resume point: it costs a read and decode of the skipped rows.
    """
    batch_size, seed, pipeline_id = spec.batch_size, spec.seed, spec.pipeline_id
    num_pipelines = spec.num_pipelines
    streams = seed * 1_000_003 + 4 * pipeline_id
    num_features = self.num_features
    if spec.positive_share is not None:
      def class_chunks(cls: int, chunk: int) -> tf.data.Dataset:
        names, rows = self._pipeline_shards(str(cls), pipeline_id, num_pipelines)
        return self._chunks(names, rows=rows, seed=streams + 2 * cls, chunk=chunk)
      ds = datasets.balanced_mix(class_chunks, batch_size=batch_size, chunk=spec.chunk,
                                 seed=seed, pipeline_id=pipeline_id,
                                 positive_fraction=spec.positive_share,
                                 members=spec.members).map(
          lambda x, y: (tf.reshape(x, [batch_size, num_features]),
                        tf.reshape(y, [batch_size])))
    else:
      shards = [self._pipeline_shards(c, pipeline_id, num_pipelines) for c in ("0", "1")]
      ds = self._chunks(shards[0][0] + shards[1][0], rows=shards[0][1] + shards[1][1],
                        seed=streams, chunk=batch_size)
    return datasets.finish(ds, skip=spec.skip)

  def training_rows(self, limit: int) -> np.ndarray:
    """The first rows of the training shards, both classes in their share, up to `limit`."""
    counts = self.counts()["train"]
    parts = []
    for cls, rows in (("0", counts["rows"] - counts["positives"]), ("1", counts["positives"])):
      want = int(limit * rows / max(1, counts["rows"]))
      files = [self._path(f) for f in self.metadata["files"]["train"][cls]]
      ds = tf.data.TFRecordDataset(files).batch(max(1, WINDOW_ROWS // self.block_rows))
      for x, _ in ds.map(self._decode).rebatch(65536):
        if want <= 0:
          break
        parts.append(x.numpy()[:want])
        want -= len(parts[-1])
    return np.concatenate(parts) if parts else np.zeros((0, self.num_features), np.float32)

  def _rows(self, split: str) -> tf.data.Dataset:
    """The split's rows as decoded groups of blocks, in a fixed order (files read 4 at once)."""
    ds = tf.data.TFRecordDataset([self._path(f) for f in self.metadata["files"][split]],
                                 num_parallel_reads=4)
    return ds.batch(max(1, WINDOW_ROWS // self.block_rows)).map(
        self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def predictions(self, split: str, scorer) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [n], logits float32 [..., n]) of every row of a split, streamed in batches
    of 65536."""
    labels, logits = [], []
    for x, y in self._rows(split).rebatch(65536).prefetch(2):
      logits.append(scorer(x))
      labels.append(y.numpy().astype(np.int64))
    return np.concatenate(labels), np.concatenate(logits, axis=-1)
