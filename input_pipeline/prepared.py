"""Data larger than memory: a CSV prepared once into TFRecord shards, then streamed by tf.data.

`prepare(config, output_dir)` (`main.py --mode=prepare`) reads the CSV twice, in chunks of
`config.prepare_chunk_rows` rows, and never holds the whole file:
  pass 1: validate and clean each chunk exactly as the in-memory path does
          (`preprocessing.validate_features`, `Preprocessor.clean`), assign every row to
          train/validation/test, and accumulate the training rows' mean and variance
          (Chan et al.'s pairwise merge, in float64, so chunking does not change the result);
  pass 2: scale with those statistics (`Preprocessor.transform`) and write the rows in blocks:
          the training split into per-class shards, validation and test into shards of their
          own. Each record is one `tf.train.Example` holding up to BLOCK_ROWS rows of one shard,
          {x: the rows' float32 features as little-endian bytes, y: their uint8 labels as
          bytes}; only a shard's last block is short.
`metadata.json` is written last, so a directory without it is an interrupted preparation.

The split is a hash of (row number in the file, seed), not a shuffle of the whole file: every
row lands in test with probability test_fraction and in validation with validation_fraction,
independently of every other row. Each class is therefore split in those proportions only in
expectation (the stratification is approximate: on the credit-card set's 492 positives the
test split's positive count has a standard deviation of ~9 around its expected ~98). The same
file, fractions and seed always give the same split, whatever the chunk size.

Why blocks: tf.data's cost is per element, and format 1 (one Example per row) paid it per row:
on 2 cores the stream cost ~6-8 ms of CPU per 2048-row batch (~3 ms of it just reading the
negatives' records one by one) against ~0.5 ms for the in-memory path, and the training step
competes with the input pipeline for the same cores. With blocks, reading and decoding (one
`parse_example` and one `decode_raw` per group of blocks) cost ~0.5 ms per 2048 rows, and the
whole stream ~0.8 ms per batch. Per batch, blocks of 128 and 256 rows measured 0.74-0.81 ms, 64
rows 0.77-1.15 ms, 512 and 1024 rows 0.86-1.05 ms; 128 is the smaller of the two cheapest, and a
block is the unit of rows that always travel together.

Training (`--prepared_dir`) streams the shards, per class: the shard files are shuffled and
interleaved (a class small enough to fit the shuffle buffer's budget is read once and its
records cached: re-opening every file at every pass of a few thousand positives cost more than
the rest of the stream together), repeated, and the blocks shuffled through a bounded buffer;
groups of blocks are decoded at once, cut into windows of a fixed number of rows (`rebatch`,
which absorbs the short blocks without dropping rows), each window permuted row by row (one
stateless, seeded op), and split into chunks of `oversample_chunk` rows that
`sample_from_datasets` mixes; then batch and prefetch. Memory is bounded by the buffers, not by
the data size.

What the shuffle mixes, and what it does not: a block's rows are fixed at prepare time (rows of
one (split, class) spread over a CSV chunk: the chunk's rows are permuted before they are dealt
round-robin to the shards and cut into blocks), and the rows of a block always reach the stream
close together, within one window (~4096 rows) or two neighbouring ones; there they are permuted
among the rows of the window's other ~31 blocks, so a chunk draws its rows from many blocks. Blocks are mixed only
locally: two blocks further apart than the buffer (~100,000 rows) in the interleaved stream
are never swapped, which is why shards are filled round-robin and the file order is shuffled on
every pass. The stream is a pure function of the seed, so `skip` resumes it exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from input_pipeline import preprocessing, sources
from input_pipeline.errors import DataError

METADATA_FILE = "metadata.json"
# 2: one record per block of rows (1 was one record per row).
FORMAT_VERSION = 2
SPLITS = ("train", "validation", "test")
# Rows per record. tf.data's cost is per element: reading, shuffling and parsing a block of
# BLOCK_ROWS rows costs about what one row did in format 1 (see the module docstring for the
# measurements). The last block of a shard is short. Readers take the figure from metadata.json.
BLOCK_ROWS = 128
# Rows held by each class's shuffle buffer (as SHUFFLE_BUFFER // block records). ~120 bytes a
# row: ~12 MB per class, enough to mix the interleaved shards well, small next to the 1.5 GB
# budget of a large run.
SHUFFLE_BUFFER = 100_000
# Blocks are re-permuted row by row in windows of ~WINDOW_ROWS rows (see PreparedData._chunks).
WINDOW_ROWS = 4096


# ---------------------------------------------------------------------------------------------
# The split: a hash of the row number.


def _splitmix64(x: np.ndarray) -> np.ndarray:
  """A bijective 64-bit mixer (Steele et al.): consecutive inputs give unrelated outputs."""
  with np.errstate(over="ignore"):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def assign_splits(rows: np.ndarray, *, seed: int, validation_fraction: float,
                  test_fraction: float) -> np.ndarray:
  """Split of each row (0 train, 1 validation, 2 test), from its row number in the file.

  Args:
    rows: row numbers (0-based, data rows of the file).
    seed: the run seed; another seed gives another split.
    validation_fraction: probability that a row goes to validation.
    test_fraction: probability that a row goes to test.

  Returns:
    int8 array like `rows`.
  """
  keys = np.asarray(rows, np.uint64) ^ _splitmix64(np.full(1, seed, np.uint64))
  u = (_splitmix64(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # [0, 1)
  out = np.zeros(len(keys), np.int8)
  out[u < test_fraction + validation_fraction] = 1
  out[u < test_fraction] = 2
  return out


# ---------------------------------------------------------------------------------------------
# Streaming statistics.


@dataclasses.dataclass
class RunningMoments:
  """Count, mean and sum of squared deviations, merged chunk by chunk (Chan et al. 1979).

  Merging per-chunk (mean, M2) instead of summing x and x^2 avoids the cancellation of the
  naive formula; the result equals numpy's mean/std over all rows to float64 rounding.
  """

  count: int = 0
  mean: np.ndarray | None = None
  m2: np.ndarray | None = None

  def update(self, x: np.ndarray) -> None:
    n = len(x)
    if n == 0:
      return
    mean = x.mean(axis=0)
    m2 = ((x - mean) ** 2).sum(axis=0)
    if self.count == 0:
      self.count, self.mean, self.m2 = n, mean, m2
      return
    total = self.count + n
    delta = mean - self.mean
    self.mean = self.mean + delta * (n / total)
    self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
    self.count = total

  def std(self) -> np.ndarray:
    """Population standard deviation (ddof=0), like the in-memory path's `np.std`."""
    return np.sqrt(self.m2 / self.count)


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
# Preparation.


def _shard_name(split: str, index: int, shards: int, cls: int | None = None) -> str:
  label = f"-class{cls}" if cls is not None else ""
  return f"{split}{label}-{index:05d}-of-{shards:05d}.tfrecord"


def _csv_chunks(path: str, chunk_rows: int):
  """(first row number, frame) for each chunk of the CSV; DataError for an unreadable file."""
  sources.check_csv_path(path)
  try:
    start = 0
    with pd.read_csv(path, chunksize=chunk_rows) as reader:
      for frame in reader:
        if len(frame.columns) < 2:
          raise DataError(f"{path} has {len(frame.columns)} column(s); need a label and at "
                          "least one feature")
        yield start, frame
        start += len(frame)
    if start == 0:
      raise DataError(f"{path} has a header but no data rows")
  except pd.errors.EmptyDataError:
    raise DataError(f"{path} is empty") from None
  except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as e:
    if isinstance(e, DataError):
      raise
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"{path} is not a readable CSV file: {first}") from None


def _clean_chunk(frame: pd.DataFrame, start: int, config, pre):
  """(row numbers, cleaned float64 features, labels) of one chunk, validated."""
  frame = frame.set_axis(np.arange(start, start + len(frame)), axis=0)
  features, labels = preprocessing.validate_features(
      frame, config.label_column, config.drop_invalid_rows, require_both_classes=False)
  if pre is None:
    pre = preprocessing.unfitted_preprocessor(list(map(str, features.columns)), config)
  rows = features.index.to_numpy()
  return rows, pre.clean(features).to_numpy(), labels, pre


class _ShardWriter:
  """A TFRecord file of blocks of `block_rows` rows: rows wait until they fill a block, so only
  the file's last block is short."""

  def __init__(self, path: str, block_rows: int):
    self._writer = tf.io.TFRecordWriter(path)
    self._block = block_rows
    self._x, self._y, self._pending = [], [], 0
    self.rows = 0

  def add(self, x: np.ndarray, y: np.ndarray) -> None:
    self._x.append(x)
    self._y.append(y)
    self._pending += len(y)
    self.rows += len(y)
    if self._pending >= self._block:
      self._write(final=False)

  def _write(self, final: bool) -> None:
    x, y = np.concatenate(self._x), np.concatenate(self._y)
    end = len(y) if final else len(y) // self._block * self._block
    for i in range(0, end, self._block):
      self._writer.write(encode_block(x[i:i + self._block], y[i:i + self._block]))
    self._x, self._y, self._pending = [x[end:]], [y[end:]], len(y) - end

  def close(self) -> None:
    if self._pending:
      self._write(final=True)
    self._writer.close()


def prepare(config, output_dir: str) -> dict:
  """Prepares `config.data_path` (or the verified credit-card set) into TFRecord shards.

  Args:
    config: an engine Config; uses data_path, dataset, label_column, drop_invalid_rows, clip,
      seed, validation_fraction, test_fraction, prepare_chunk_rows, prepare_shards, fresh.
    output_dir: the directory to write; it must not hold a prepared set unless config.fresh.

  Returns:
    The metadata written to `output_dir/metadata.json`.

  Raises:
    DataError: unreadable or invalid data, a split without both classes, or an output_dir
      that already holds a prepared set.
  """
  if config.data_path:
    path = config.data_path
  elif config.dataset == "creditcard":
    path = sources.fetch_creditcard()
  else:
    raise DataError("--mode=prepare reads a CSV: pass --data_path (or --dataset=creditcard)")
  if os.path.exists(os.path.join(output_dir, METADATA_FILE)) and not config.fresh:
    raise DataError(f"--output_dir={output_dir} already holds a prepared set; pass --fresh to "
                    "replace it")
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise DataError(f"--output_dir={output_dir} is a file, not a directory")
  split_kw = dict(seed=config.seed, validation_fraction=config.validation_fraction,
                  test_fraction=config.test_fraction)

  # Pass 1: validate, clean, split, and accumulate the training rows' statistics.
  t0 = time.perf_counter()
  pre, moments = None, RunningMoments()
  counts = np.zeros((3, 2), np.int64)  # [split, class]
  columns = None
  for start, frame in _csv_chunks(path, config.prepare_chunk_rows):
    columns = columns or list(map(str, frame.columns))
    rows, cleaned, labels, pre = _clean_chunk(frame, start, config, pre)
    split = assign_splits(rows, **split_kw)
    moments.update(cleaned[split == 0])
    np.add.at(counts, (split, labels), 1)
  logging.info("Prepare pass 1 (statistics): %d rows in %.1f s", int(counts.sum()),
               time.perf_counter() - t0)
  for s, name in enumerate(SPLITS):
    for cls in (0, 1):
      if counts[s, cls] == 0:
        raise DataError(f"the {name} split has no rows of class {cls} ({int(counts[:, cls].sum())}"
                        f" in the file); need both classes in every split")
  scale = moments.std()
  scale[scale == 0] = 1.0  # A constant column would divide by zero: centred but unscaled.
  pre.mean, pre.scale = moments.mean.tolist(), scale.tolist()

  # Pass 2: scale and write. Round-robin shard assignment per (split, class) keeps the shards
  # within one row of each other, so every input pipeline gets its share of positives. Each
  # chunk's rows of a (split, class) are permuted first (seeded by the seed and the chunk's first
  # row), so a block holds rows from across the chunk, not a run of neighbouring rows of the file
  # (a time-ordered file would otherwise give time slices): blocks are fixed from here on.
  if config.fresh and os.path.isdir(output_dir):
    shutil.rmtree(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  shards = config.prepare_shards
  files = {"train": {str(c): [_shard_name("train", i, shards, c) for i in range(shards)]
                     for c in (0, 1)},
           "validation": [_shard_name("validation", i, shards) for i in range(shards)],
           "test": [_shard_name("test", i, shards) for i in range(shards)]}
  writers = {name: _ShardWriter(os.path.join(output_dir, name), BLOCK_ROWS)
             for name in (files["train"]["0"] + files["train"]["1"] + files["validation"] +
                          files["test"])}
  t1 = time.perf_counter()
  next_shard = np.zeros((3, 2), np.int64)
  try:
    for start, frame in _csv_chunks(path, config.prepare_chunk_rows):
      rows, cleaned, labels, _ = _clean_chunk(frame, start, config, pre)
      split = assign_splits(rows, **split_kw)
      x = pre.transform(cleaned).astype(np.float32)
      rng = np.random.default_rng([config.seed, start])
      for s, name in enumerate(SPLITS):
        for cls in (0, 1):
          idx = rng.permutation(np.flatnonzero((split == s) & (labels == cls)))
          shard_of = (next_shard[s, cls] + np.arange(len(idx))) % shards
          next_shard[s, cls] += len(idx)
          names = files["train"][str(cls)] if name == "train" else files[name]
          for shard in range(shards):
            mine = idx[shard_of == shard]
            writers[names[shard]].add(x[mine], labels[mine])
  finally:
    for w in writers.values():
      w.close()
  shard_counts = {"train": {c: [writers[n].rows for n in files["train"][c]] for c in ("0", "1")},
                  **{name: [writers[n].rows for n in files[name]]
                     for name in ("validation", "test")}}
  logging.info("Prepare pass 2 (write): %.1f s", time.perf_counter() - t1)

  metadata = {
      "format_version": FORMAT_VERSION,
      "source": os.path.abspath(path),
      "columns": columns,
      "label_column": config.label_column,
      "feature_names": pre.feature_names,
      "num_features": len(pre.feature_names),
      "preprocessing": dataclasses.asdict(pre),
      "statistics": {"train_rows": moments.count, "mean": pre.mean, "scale": pre.scale},
      "counts": {name: {"rows": int(counts[s].sum()), "positives": int(counts[s, 1])}
                 for s, name in enumerate(SPLITS)},
      "split": {"method": "hash of (row number, seed)", **split_kw},
      "record": {"rows": f"up to {BLOCK_ROWS} (the last block of a shard may be shorter)",
                 "x": f"bytes: float32 little-endian [rows, {len(pre.feature_names)}], row-major",
                 "y": "bytes: uint8 [rows], 0/1"},
      "block_rows": BLOCK_ROWS,
      "shards": shards, "files": files, "shard_counts": shard_counts,
  }
  tmp = os.path.join(output_dir, "." + METADATA_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(metadata, f, indent=2)
  os.replace(tmp, os.path.join(output_dir, METADATA_FILE))
  return metadata


# ---------------------------------------------------------------------------------------------
# Reading.


class PreparedData:
  """A prepared directory: its metadata, and streaming datasets over its shards.

  Offers what the training loop needs of `preprocessing.Splits` (preprocessor, num_features,
  counts) without any rows in memory.
  """

  def __init__(self, directory: str, metadata: dict):
    self.directory = directory
    self.metadata = metadata
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

  @property
  def train_class_counts(self) -> np.ndarray:
    c = self.metadata["counts"]["train"]
    return np.array([c["rows"] - c["positives"], c["positives"]], np.int64)

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
    # Unbatching a window's chunks costs less per chunk than `rebatch(chunk)` (measured).
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

  def train_dataset(self, *, strategy: str, batch_size: int, chunk: int, seed: int,
                    pipeline_id: int = 0, num_pipelines: int = 1,
                    skip: int = 0) -> tf.data.Dataset:
    """The infinite training stream of (features [batch, F] float32, labels [batch] int32).

    Same contract as `datasets.train_dataset`. Input pipelines read disjoint shard files
    (shard i goes to pipeline i % num_pipelines). `skip` replays the seeded stream up to the
    resume point: it costs a read and decode of the skipped rows.
    """
    streams = seed * 1_000_003 + 4 * pipeline_id
    num_features = self.num_features
    if strategy == "oversample":
      chunk = math.gcd(chunk, batch_size)
      pos_names, pos_rows = self._pipeline_shards("1", pipeline_id, num_pipelines)
      neg_names, neg_rows = self._pipeline_shards("0", pipeline_id, num_pipelines)
      pos = self._chunks(pos_names, rows=pos_rows, seed=streams + 2, chunk=chunk)
      neg = self._chunks(neg_names, rows=neg_rows, seed=streams, chunk=chunk)
      # Mixing chunks, not rows: see input_pipeline/datasets.py for why.
      mixed = tf.data.Dataset.sample_from_datasets([pos, neg], weights=[0.5, 0.5],
                                                   seed=seed * 7919 + pipeline_id)
      ds = mixed.batch(batch_size // chunk, drop_remainder=True).map(
          lambda x, y: (tf.reshape(x, [batch_size, num_features]),
                        tf.reshape(y, [batch_size])))
    else:
      shards = [self._pipeline_shards(c, pipeline_id, num_pipelines) for c in ("0", "1")]
      ds = self._chunks(shards[0][0] + shards[1][0], rows=shards[0][1] + shards[1][1],
                        seed=streams, chunk=batch_size)
    if skip:
      ds = ds.skip(skip)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())

  def _rows(self, split: str) -> tf.data.Dataset:
    """The split's rows as decoded groups of blocks, in a fixed order (files read 4 at once)."""
    ds = tf.data.TFRecordDataset([self._path(f) for f in self.metadata["files"][split]],
                                 num_parallel_reads=4)
    return ds.batch(max(1, WINDOW_ROWS // self.block_rows)).map(
        self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def eval_dataset(self, split: str, *, batch_size: int, global_batch_size: int,
                   pipeline_id: int = 0, num_pipelines: int = 1) -> tf.data.Dataset:
    """Finite (features, labels, mask) batches of a split, padded like `datasets.eval_dataset`.

    Streamed and not cached: memory stays bounded whatever the split's size. The padding comes
    last, so a row is real exactly when its position is below the split's row count; the mask
    is computed per batch from the batch index, not carried row by row. Every worker cuts the
    same batches (the order is fixed) before `shard` hands each its own.
    """
    n = self.metadata["counts"][split]["rows"]
    total = max(global_batch_size, -(-n // global_batch_size) * global_batch_size)
    pad = tf.data.Dataset.from_tensors((tf.zeros([total - n, self.num_features], tf.float32),
                                        tf.zeros([total - n], tf.int32)))
    ds = self._rows(split).concatenate(pad).rebatch(batch_size, drop_remainder=True)
    ds = ds.enumerate()
    if num_pipelines > 1:
      ds = ds.shard(num_pipelines, pipeline_id)

    def mask(index, x, y):
      position = index * batch_size + tf.range(batch_size, dtype=tf.int64)
      return x, y, tf.cast(position < n, tf.float32)
    return ds.map(lambda i, b: mask(i, *b)).prefetch(tf.data.AUTOTUNE)

  def predict(self, model, split: str, batch_size: int = 65536):
    """(labels int64, probabilities float64) of every row of a split, streamed in batches."""
    ds = self._rows(split).rebatch(batch_size).prefetch(2)
    labels, probs = [], []
    for x, y in ds:
      logits = model(x, training=False)
      probs.append(tf.sigmoid(tf.cast(logits, tf.float64)).numpy())
      labels.append(y.numpy().astype(np.int64))
    return np.concatenate(labels), np.concatenate(probs)


def _options() -> tf.data.Options:
  # As in the in-memory path (input_pipeline/datasets.py): the default `map_parallelization`
  # rewrite would make every map parallel, including the per-draw map inside
  # `sample_from_datasets`, and each draw would hop threads; the maps worth parallelising (the
  # decodes) ask for it themselves.
  options = tf.data.Options()
  options.experimental_optimization.map_parallelization = False
  return options
