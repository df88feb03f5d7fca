"""Data larger than memory: a CSV prepared once into TFRecord shards, then streamed by tf.data.

`prepare(config, output_dir)` (`main.py --mode=prepare`) reads the CSV twice, in chunks of
`config.prepare_chunk_rows` rows, and never holds the whole file:
  pass 1: validate and clean each chunk exactly as the in-memory path does
          (`preprocessing.validate_features`, `Preprocessor.clean`), assign every row to
          train/validation/test, and accumulate the training rows' mean and variance
          (Chan et al.'s pairwise merge, in float64, so chunking does not change the result);
  pass 2: scale with those statistics (`Preprocessor.transform`) and write the rows as
          `tf.train.Example`s {x: float[F], y: int64}: the training split into per-class shards,
          validation and test into shards of their own.
`metadata.json` is written last, so a directory without it is an interrupted preparation.

The split is a hash of (row number in the file, seed), not a shuffle of the whole file: every
row lands in test with probability test_fraction and in validation with validation_fraction,
independently of every other row. Each class is therefore split in those proportions only in
expectation (the stratification is approximate: on the credit-card set's 492 positives the
test split's positive count has a standard deviation of ~9 around its expected ~98). The same
file, fractions and seed always give the same split, whatever the chunk size.

Training (`--prepared_dir`) streams the shards: per class, the shard files are shuffled,
interleaved and repeated; records move on in blocks of 64 that are shuffled through a bounded
buffer, then re-permuted row by row in windows of 4096 rows (one vectorised op), cut into chunks
of `oversample_chunk` records, mixed by `sample_from_datasets`, batched, parsed (one vectorised
`parse_example` per batch) and prefetched. Memory is bounded by the buffers, not by the data
size. The shuffle is local: rows further apart than the buffer in the interleaved stream are
never swapped, so shards are filled round-robin (neighbouring rows of the file go to different
shards) and the file order is shuffled on every pass.
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
FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
# Records held by each class's shuffle buffer. ~150 bytes a record: ~15 MB per class, enough to
# mix the interleaved shards well, small next to the 1.5 GB budget of a large run.
SHUFFLE_BUFFER = 100_000
# Records move through the training stream in blocks of BLOCK, and are re-permuted row by row in
# windows of ~WINDOW_ROWS (see PreparedData._chunks).
BLOCK = 64
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
# tf.train.Example encoding, vectorised.


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


def _example_layout(num_features: int) -> tuple[bytes, bytes]:
  """The bytes of an Example {x: float[F], y: int64 0/1} before the floats and before y.

  With F fixed and y in {0, 1} (a one-byte varint), every record has the same layout: a
  constant prefix, 4F bytes of little-endian floats, a constant middle, one byte of label.
  Building records with numpy this way is ~50x faster than a protobuf object per row; a test
  checks the bytes parse to the same values as `tf.train.Example(...).SerializeToString()`.
  """
  floats = b"\0" * (4 * num_features)
  float_list = _field(1, floats)                      # FloatList.value, packed
  feature_x = _field(2, float_list)                   # Feature.float_list
  entry_x = _field(1, b"x") + _field(2, feature_x)    # map entry: key, value
  int64_list = _field(1, b"\0")                       # Int64List.value, packed, one byte
  feature_y = _field(3, int64_list)                   # Feature.int64_list
  entry_y = _field(1, b"y") + _field(2, feature_y)
  features = _field(1, entry_x) + _field(1, entry_y)  # Features.feature (map)
  example = _field(1, features)                       # Example.features
  start = example.index(float_list) + len(float_list) - len(floats)
  prefix = example[:start]
  middle = example[start + len(floats):-1]
  assert example == prefix + floats + middle + b"\0"
  return prefix, middle


def encode_examples(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Serialized `tf.train.Example`s of rows: a uint8 array [N, record_bytes].

  Args:
    x: float32 [N, F] features.
    y: 0/1 labels [N].
  """
  x = np.ascontiguousarray(x, dtype="<f4")
  n, f = x.shape
  prefix, middle = _example_layout(f)
  parts = [np.broadcast_to(np.frombuffer(prefix, np.uint8), (n, len(prefix))),
           x.view(np.uint8).reshape(n, 4 * f),
           np.broadcast_to(np.frombuffer(middle, np.uint8), (n, len(middle))),
           np.asarray(y, np.uint8).reshape(n, 1)]
  return np.concatenate(parts, axis=1)


def feature_spec(num_features: int) -> dict:
  return {"x": tf.io.FixedLenFeature([num_features], tf.float32),
          "y": tf.io.FixedLenFeature([], tf.int64)}


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
  # within one record of each other, so every input pipeline gets its share of positives.
  if config.fresh and os.path.isdir(output_dir):
    shutil.rmtree(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  shards = config.prepare_shards
  files = {"train": {str(c): [_shard_name("train", i, shards, c) for i in range(shards)]
                     for c in (0, 1)},
           "validation": [_shard_name("validation", i, shards) for i in range(shards)],
           "test": [_shard_name("test", i, shards) for i in range(shards)]}
  shard_counts = {"train": {"0": [0] * shards, "1": [0] * shards},
                  "validation": [0] * shards, "test": [0] * shards}
  writers = {}
  for name in files["train"]["0"] + files["train"]["1"] + files["validation"] + files["test"]:
    writers[name] = tf.io.TFRecordWriter(os.path.join(output_dir, name))
  t1 = time.perf_counter()
  next_shard = np.zeros((3, 2), np.int64)
  try:
    for start, frame in _csv_chunks(path, config.prepare_chunk_rows):
      rows, cleaned, labels, _ = _clean_chunk(frame, start, config, pre)
      split = assign_splits(rows, **split_kw)
      records = encode_examples(pre.transform(cleaned), labels)
      for s, name in enumerate(SPLITS):
        for cls in (0, 1):
          idx = np.flatnonzero((split == s) & (labels == cls))
          shard_of = (next_shard[s, cls] + np.arange(len(idx))) % shards
          next_shard[s, cls] += len(idx)
          for shard in range(shards):
            mine = idx[shard_of == shard]
            if name == "train":
              writer = writers[files["train"][str(cls)][shard]]
              shard_counts["train"][str(cls)][shard] += len(mine)
            else:
              writer = writers[files[name][shard]]
              shard_counts[name][shard] += len(mine)
            for i in mine:
              writer.write(records[i].tobytes())
  finally:
    for w in writers.values():
      w.close()
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
      "example": {"x": f"float32[{len(pre.feature_names)}]", "y": "int64 (0/1)"},
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

  def _parse(self, serialized: tf.Tensor, rows: int):
    serialized = tf.reshape(serialized, [rows])  # static shape: TPUs need it
    parsed = tf.io.parse_example(serialized, feature_spec(self.num_features))
    return parsed["x"], tf.cast(parsed["y"], tf.int32)

  def _chunks(self, names: list[str], *, seed: int, chunk: int) -> tf.data.Dataset:
    """Infinite, shuffled [chunk] vectors of serialized records of these shard files.

    A per-record `shuffle` costs several microseconds per row in tf.data and capped this stream
    at a third of the in-memory path's rate. So records travel in blocks of BLOCK: blocks are
    shuffled through the buffer, then windows of blocks are permuted row by row in one
    vectorised op (stateless, seeded by the window's index: the stream is still a pure function
    of the seed, so `skip` resumes it). `repeat` comes before the shuffle here, so passes blur
    at their boundaries: the cost of never dropping rows of a class smaller than a block.
    """
    files = tf.data.Dataset.from_tensor_slices([self._path(n) for n in names])
    files = files.shuffle(len(names), seed=seed, reshuffle_each_iteration=True)
    # Each file is read and cut into blocks in the interleave's own threads, so the per-record
    # work runs in parallel and only blocks are handed on; `rebatch` then evens out the short
    # block at each file's end without dropping its rows.
    ds = files.interleave(lambda f: tf.data.TFRecordDataset(f).batch(BLOCK),
                          cycle_length=min(len(names), 8), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True).repeat()
    ds = ds.rebatch(BLOCK, drop_remainder=True)
    ds = ds.shuffle(SHUFFLE_BUFFER // BLOCK, seed=seed + 1, reshuffle_each_iteration=True)
    common = math.lcm(BLOCK, chunk)
    window_rows = common * max(1, WINDOW_ROWS // common)
    ds = ds.batch(window_rows // BLOCK, drop_remainder=True).enumerate()

    def remix(index, blocks):
      rows = tf.reshape(blocks, [window_rows])
      rows = tf.random.experimental.stateless_shuffle(
          rows, seed=tf.stack([tf.constant(seed, tf.int64), index]))
      return tf.reshape(rows, [window_rows // chunk, chunk])
    return ds.map(remix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()

  def _pipeline_shards(self, cls: str, pipeline_id: int, num_pipelines: int) -> list[str]:
    names = self.metadata["files"]["train"][cls]
    counts = self.metadata["shard_counts"]["train"][cls]
    mine = [n for i, (n, c) in enumerate(zip(names, counts))
            if i % num_pipelines == pipeline_id and c > 0]
    if not mine:
      raise DataError(f"input pipeline {pipeline_id} of {num_pipelines} has no training rows "
                      f"of class {cls} in {self.directory} ({len(names)} shards, "
                      f"{sum(counts)} rows of that class): prepare with more rows of that class "
                      "or fewer workers")
    return mine

  def train_dataset(self, *, strategy: str, batch_size: int, chunk: int, seed: int,
                    pipeline_id: int = 0, num_pipelines: int = 1,
                    skip: int = 0) -> tf.data.Dataset:
    """The infinite training stream of (features [batch, F] float32, labels [batch] int32).

    Same contract as `datasets.train_dataset`. Input pipelines read disjoint shard files
    (shard i goes to pipeline i % num_pipelines). `skip` replays the seeded stream up to the
    resume point on serialized records, before parsing: it costs a read of the skipped records.
    """
    streams = seed * 1_000_003 + 4 * pipeline_id
    if strategy == "oversample":
      chunk = math.gcd(chunk, batch_size)
      pos = self._chunks(self._pipeline_shards("1", pipeline_id, num_pipelines),
                         seed=streams + 2, chunk=chunk)
      neg = self._chunks(self._pipeline_shards("0", pipeline_id, num_pipelines),
                         seed=streams, chunk=chunk)
      # Mixing chunks, not rows: see input_pipeline/datasets.py for why.
      mixed = tf.data.Dataset.sample_from_datasets([pos, neg], weights=[0.5, 0.5],
                                                   seed=seed * 7919 + pipeline_id)
      ds = mixed.batch(batch_size // chunk, drop_remainder=True)
    else:
      names = (self._pipeline_shards("0", pipeline_id, num_pipelines) +
               self._pipeline_shards("1", pipeline_id, num_pipelines))
      ds = self._chunks(names, seed=streams, chunk=batch_size)
    if skip:
      ds = ds.skip(skip)
    ds = ds.map(lambda s: self._parse(s, batch_size), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, split: str, *, batch_size: int, global_batch_size: int,
                   pipeline_id: int = 0, num_pipelines: int = 1) -> tf.data.Dataset:
    """Finite (features, labels, mask) batches of a split, padded like `datasets.eval_dataset`.

    Streamed and not cached: memory stays bounded whatever the split's size. The padding comes
    last, so a row is real exactly when its position is below the split's row count; the mask
    is computed per batch from the batch index, not carried record by record.
    """
    n = self.metadata["counts"][split]["rows"]
    total = max(global_batch_size, -(-n // global_batch_size) * global_batch_size)
    padding = encode_examples(np.zeros((1, self.num_features), np.float32),
                              np.zeros(1))[0].tobytes()
    # Several files read at once, in a deterministic order: every worker must cut the same
    # batches before `shard` hands each its own.
    real = tf.data.TFRecordDataset([self._path(f) for f in self.metadata["files"][split]],
                                   num_parallel_reads=4)
    pad = tf.data.Dataset.from_tensors(tf.constant(padding)).repeat(total - n)
    ds = real.concatenate(pad).batch(batch_size, drop_remainder=True).enumerate()
    if num_pipelines > 1:
      ds = ds.shard(num_pipelines, pipeline_id)

    def parse(index, serialized):
      x, y = self._parse(serialized, batch_size)
      position = index * batch_size + tf.range(batch_size, dtype=tf.int64)
      return x, y, tf.cast(position < n, tf.float32)
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  def predict(self, model, split: str, batch_size: int = 65536):
    """(labels int64, probabilities float64) of every row of a split, streamed in batches."""
    ds = tf.data.TFRecordDataset([self._path(f) for f in self.metadata["files"][split]],
                                 num_parallel_reads=4)
    ds = ds.batch(batch_size).map(
        lambda s: tf.io.parse_example(s, feature_spec(self.num_features)),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    labels, probs = [], []
    for batch in ds:
      logits = model(batch["x"], training=False)
      probs.append(tf.sigmoid(tf.cast(logits, tf.float64)).numpy())
      labels.append(batch["y"].numpy())
    return np.concatenate(labels), np.concatenate(probs)
