"""`--mode=prepare`: a table (CSV or Parquet) larger than memory, written once into TFRecord
shards for streaming.

`prepare(config, output_dir)` reads the file twice (input_pipeline/readers.py), in chunks of `config.prepare_chunk_rows`
rows, and never holds the whole file:
  pass 1: check and clean each chunk exactly as the in-memory path does (column roles from the
          first chunk, `columns.read_rows`, `Preprocessor.clean`), assign every row to
          train/validation/test, and accumulate the training rows' statistics with the same
          `fitting.Fitter` the in-memory path uses (moments merged pairwise in float64, a
          hash-chosen sample for the medians, category counts for the vocabularies), so
          chunking does not change the result;
  pass 2: encode with those statistics (`Preprocessor.encode`) and write the rows in blocks
          (the format is input_pipeline/prepared.py's): the training split into per-class
          shards, validation and test into shards of their own.
`metadata.json` is written last, so a directory without it is an interrupted preparation.

With `--split=time` a first pass reads only the time and label columns (8 bytes a row are held)
and orders the rows as `preprocessing.time_split` does in memory: the same rows go to each split.

The random split is a hash of (row number in the file, seed), not a shuffle of the whole file: every
row lands in test with probability test_fraction and in validation with validation_fraction,
independently of every other row. Each class is therefore split in those proportions only in
expectation (the test split's positive count is binomial, with a standard deviation of
sqrt(n p (1 - p)) for n positives and p = test_fraction). The same file, fractions and seed always
give the same split, whatever the chunk size.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from input_pipeline import columns, preprocessing, readers, sources
from input_pipeline.data import SPLIT_NAMES
from input_pipeline.errors import DataError
from input_pipeline.fitting import Fitter, RunningMoments  # noqa: F401 - tests use it
from input_pipeline.preprocessing import assign_splits
from input_pipeline.prepared import BLOCK_ROWS, FORMAT_VERSION, METADATA_FILE, encode_block

# ---------------------------------------------------------------------------------------------
# Preparation.


def _shard_name(split: str, index: int, shards: int, cls: int | None = None) -> str:
  label = f"-class{cls}" if cls is not None else ""
  return f"{split}{label}-{index:05d}-of-{shards:05d}.tfrecord"


def _shard_files(shards: int) -> dict:
  """Every shard file of a prepared set: {"train": {"0": [...], "1": [...]}, split: [...]}."""
  return {"train": {str(c): [_shard_name("train", i, shards, c) for i in range(shards)]
                    for c in (0, 1)},
          "validation": [_shard_name("validation", i, shards) for i in range(shards)],
          "test": [_shard_name("test", i, shards) for i in range(shards)]}


def _all_files(files: dict) -> list[str]:
  return files["train"]["0"] + files["train"]["1"] + files["validation"] + files["test"]


def _open(path: str):
  table = readers.open_table(path)
  if len(table.columns) < 2:
    raise DataError(f"{path} has {len(table.columns)} column(s); need a label and at least "
                    "one feature")
  return table


def _unfitted(table, config):
  """The column roles, decided on the file's first chunk (its other chunks must agree), as an
  unfitted preprocessor."""
  text = set(sources.text_columns(config))
  numeric = [c for c in table.columns if c not in text] if table.infer_text else None
  for frame in table.chunks(config.prepare_chunk_rows, numeric=numeric):
    roles = columns.assign_roles(frame, config)
    return preprocessing.unfitted_preprocessor(roles, config)


def _chunks_by_role(table, config, pre):
  """Each chunk read as the roles say: the numeric columns as numbers, the others as text."""
  return table.chunks(config.prepare_chunk_rows, numeric=pre.numeric_columns)


def _read_chunk(frame: pd.DataFrame, config, pre):
  """(checked rows, cleaned numeric features) of one chunk, by the roles `pre` holds."""
  roles = columns.Roles(label=config.label_column, numeric=tuple(pre.numeric_columns),
                        categorical=tuple(pre.categorical_columns), ids=tuple(pre.id_columns),
                        time=pre.time_column)
  rows = columns.read_rows(frame, roles, drop_invalid_rows=config.drop_invalid_rows,
                           require_both_classes=False)
  return rows, pre.clean(rows.numeric, rows.times)


class _Splitter:
  """The split of each row number: a hash (`--split=random`), or the time order (`time`)."""

  def __init__(self, table, config):
    self.kw = dict(seed=config.seed, validation_fraction=config.validation_fraction,
                   test_fraction=config.test_fraction)
    self.by_row, self.time_column = None, config.time_column
    if config.split == "time":
      self.by_row = self._time_pass(table, config)

  def _time_pass(self, table, config) -> np.ndarray:
    t0 = time.perf_counter()
    times, labels = [], []
    for frame in table.chunks(config.prepare_chunk_rows, numeric=(),
                              columns=[config.time_column, config.label_column]):
      times.append(columns.parse_times(frame[config.time_column], config.time_column))
      labels.append(columns.parse_labels(frame[config.label_column], config.label_column))
    split = preprocessing.time_split(np.concatenate(times), np.concatenate(labels),
                                     validation_fraction=config.validation_fraction,
                                     test_fraction=config.test_fraction)
    logging.info("Prepare pass 0 (time order): %d rows in %.1f s", len(split),
                 time.perf_counter() - t0)
    return split

  def __call__(self, index: np.ndarray) -> np.ndarray:
    if self.by_row is not None:
      return self.by_row[index]
    return assign_splits(index, **self.kw)

  def describe(self) -> dict:
    if self.by_row is not None:
      return {"method": "time order", "time_column": self.time_column, **self.kw}
    return {"method": "hash of (row number, seed)", **self.kw}


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


def check_output_dir(output_dir: str, fresh: bool) -> None:
  """Refuses an output directory prepare must not write to, before anything is read or written.

  Allowed: a directory that does not exist, an empty one, or (with `fresh`) one that holds a
  prepared set, whose own files `--fresh` then replaces. Never a directory of other files: a
  mistyped `--output_dir=.` must not touch the user's work.
  """
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise DataError(f"--output_dir={output_dir} is a file, not a directory")
  if not os.path.isdir(output_dir) or not os.listdir(output_dir):
    return
  if not os.path.exists(os.path.join(output_dir, METADATA_FILE)):
    raise DataError(f"--output_dir={output_dir} is not empty and holds no prepared set; "
                    "choose an empty or new directory")
  if not fresh:
    raise DataError(f"--output_dir={output_dir} already holds a prepared set; pass --fresh to "
                    "replace it")


def remove_prepared(output_dir: str) -> None:
  """Removes the files a previous `prepare` wrote there (its metadata and shards), no others."""
  try:
    with open(os.path.join(output_dir, METADATA_FILE)) as f:
      files = _all_files(json.load(f)["files"])
  except (OSError, ValueError, KeyError):
    files = []
  # Metadata first: a set interrupted from here on reads as unprepared, never as complete.
  for name in [METADATA_FILE] + files:
    path = os.path.join(output_dir, name)
    if os.path.isfile(path):
      os.remove(path)


def _statistics_pass(table, config, splitter: _Splitter, pre):
  """Pass 1: (the fitted preprocessor, training-row count, counts [split, class])."""
  t0 = time.perf_counter()
  fitter = Fitter(pre, config)
  counts = np.zeros((3, 2), np.int64)  # [split, class]
  for frame in _chunks_by_role(table, config, pre):
    rows, cleaned = _read_chunk(frame, config, pre)
    split = splitter(rows.index)
    train = split == 0
    fitter.update(rows.index[train], cleaned[train], [c[train] for c in rows.categorical],
                  rows.labels[train])
    np.add.at(counts, (split, rows.labels), 1)
  logging.info("Prepare pass 1 (statistics): %d rows in %.1f s", int(counts.sum()),
               time.perf_counter() - t0)
  for s, name in enumerate(SPLIT_NAMES):
    for cls in (0, 1):
      if counts[s, cls] == 0:
        raise DataError(f"the {name} split has no rows of class {cls} ({int(counts[:, cls].sum())}"
                        f" in the file); need both classes in every split")
  return fitter.finish(), fitter.rows, counts


def _write_pass(table, config, splitter: _Splitter, pre, output_dir: str,
                files: dict) -> dict:
  """Pass 2: scale and write the shards; returns {file name: rows written}.

  Round-robin shard assignment per (split, class) keeps the shards within one row of each
  other, so every input pipeline gets its share of positives. Each chunk's rows of a (split,
  class) are permuted first (seeded by the seed and the chunk's first row), so a block holds rows
  from across the chunk, not a run of neighbouring rows of the file (a time-ordered file would
  otherwise give time slices): blocks are fixed from here on.
  """
  shards = config.prepare_shards
  writers = {name: _ShardWriter(os.path.join(output_dir, name), BLOCK_ROWS)
             for name in _all_files(files)}
  next_shard = np.zeros((3, 2), np.int64)
  try:
    for frame in _chunks_by_role(table, config, pre):
      start = int(frame.index[0])
      rows, cleaned = _read_chunk(frame, config, pre)
      labels = rows.labels
      split = splitter(rows.index)
      x = pre.encode(cleaned, rows.categorical, rows.index, split == 0)
      rng = np.random.default_rng([config.seed, start])
      for s, name in enumerate(SPLIT_NAMES):
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
  return {name: w.rows for name, w in writers.items()}


def prepare(config, output_dir: str) -> dict:
  """Prepares `config.data_path` (or the verified credit-card set) into TFRecord shards.

  Args:
    config: an engine Config; uses data_path, dataset, label_column, drop_invalid_rows, clip,
      seed, validation_fraction, test_fraction, split, the column roles and vocabulary
      limits, prepare_chunk_rows, prepare_shards, fresh.
    output_dir: the directory to write: new, empty, or (with config.fresh) a prepared set.

  Returns:
    The metadata written to `output_dir/metadata.json`.

  Raises:
    DataError: unreadable or invalid data, a split without both classes, or an output_dir
      that holds a prepared set (without --fresh) or other files.
  """
  check_output_dir(output_dir, config.fresh)
  if config.data_path:
    path = config.data_path
  elif config.dataset == "creditcard":
    path = sources.fetch_creditcard()
  else:
    raise DataError("--mode=prepare reads a table: pass --data_path (or --dataset=creditcard)")
  table = _open(path)
  pre = _unfitted(table, config)
  splitter = _Splitter(table, config)
  pre, train_rows, counts = _statistics_pass(table, config, splitter, pre)
  if config.fresh and os.path.isdir(output_dir):
    remove_prepared(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  files = _shard_files(config.prepare_shards)
  t1 = time.perf_counter()
  rows = _write_pass(table, config, splitter, pre, output_dir, files)
  logging.info("Prepare pass 2 (write): %.1f s", time.perf_counter() - t1)
  metadata = {
      "format_version": FORMAT_VERSION,
      "source": os.path.abspath(path),
      "columns": table.columns,
      "label_column": config.label_column,
      "feature_names": pre.feature_names,
      "num_features": len(pre.feature_names),
      "preprocessing": dataclasses.asdict(pre),
      "statistics": {"train_rows": train_rows, "mean": pre.mean, "scale": pre.scale},
      "counts": {name: {"rows": int(counts[s].sum()), "positives": int(counts[s, 1])}
                 for s, name in enumerate(SPLIT_NAMES)},
      "split": splitter.describe(),
      "record": {"rows": f"up to {BLOCK_ROWS} (the last block of a shard may be shorter)",
                 "x": f"bytes: float32 little-endian [rows, {len(pre.feature_names)}], row-major",
                 "y": "bytes: uint8 [rows], 0/1"},
      "block_rows": BLOCK_ROWS,
      "shards": config.prepare_shards, "files": files,
      "shard_counts": {"train": {c: [rows[n] for n in files["train"][c]] for c in ("0", "1")},
                       **{s: [rows[n] for n in files[s]] for s in ("validation", "test")}},
  }
  tmp = os.path.join(output_dir, "." + METADATA_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(metadata, f, indent=2)
  os.replace(tmp, os.path.join(output_dir, METADATA_FILE))
  return metadata
