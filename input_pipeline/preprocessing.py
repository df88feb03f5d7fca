"""From a raw frame to encoded, split arrays, and the fitted statistics that make this repeatable.

Steps, in order (all recorded in `Preprocessor`, saved as `preprocessing.json` in the model
directory and inside the export, so a trained model scores raw rows):
  1. column roles and row checks (input_pipeline/columns.py): label, ID, time, categorical and
     numeric columns; text in a numeric column, Inf or |x| > 1e100 are refused or dropped;
  2. credit-card cleaning, on the credit-card set itself (a table of exactly its columns) or
     where `--creditcard_cleaning=on` asks for it, and logged: drop `Time` (seconds since the
     first transaction: it orders the rows, it does not describe them) and replace `Amount` by
     `log(Amount + 0.001)` (amounts span five orders of magnitude; 0.001 keeps zero amounts
     finite). Elsewhere a `Time` or `Amount` column is an ordinary feature;
  3. the split (input_pipeline/splits.py): stratified and seeded (`--split=random`), or by time
     (`--split=time`: the last rows in time are test, the ones before them validation);
  4. fitted on the training split only (input_pipeline/fitting.py): numeric gaps filled with the
     median, a 0/1 missing indicator for each column that had gaps, standardised and clipped to
     [-clip, clip]; each categorical column one-hot over its vocabulary plus an out-of-vocabulary
     and a missing bucket; for high-cardinality ones, two more numeric features: the value's
     training frequency and its out-of-fold fraud rate (input_pipeline/category_stats.py).

One-hot, not an embedding: a one-hot block followed by the first Dense layer is an embedding of
the layer's width (the kernel's rows are the vectors), and it keeps one float feature matrix
through every path (memory, prepared shards, ensembles, serving) at the cost of V multiply-adds
per row and column, with V capped by --max_categories.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd

from input_pipeline import category_stats
from input_pipeline import columns as columns_lib
from input_pipeline import sources, time_features
from input_pipeline.columns import parse_labels  # noqa: F401 - part of this module's interface
from input_pipeline.errors import DataError
from input_pipeline.fitting import Fitter
# The splits, part of this module's interface since before they had a module of their own.
from input_pipeline.splits import (assign_splits, split_rows, stratified_split,  # noqa: F401
                                   time_split)

AMOUNT_EPS = 0.001  # log(Amount + eps): zero amounts exist in the data.
OOV, MISSING = "<other>", "<missing>"  # The two buckets before each vocabulary.


@dataclasses.dataclass
class Preprocessor:
  """The fitted preprocessing: raw columns in, model features out."""

  numeric_columns: list[str]      # numeric feature columns as in the CSV, before cleaning
  numeric_features: list[str]     # the numeric model inputs, after cleaning
  drop_time: bool
  log_amount: bool
  mean: list[float]
  scale: list[float]
  clip: float
  label_column: str
  feature_names: list[str] = dataclasses.field(default_factory=list)
  medians: list[float] = dataclasses.field(default_factory=list)
  missing_indicators: list[str] = dataclasses.field(default_factory=list)
  categorical_columns: list[str] = dataclasses.field(default_factory=list)
  vocabularies: list[list[str]] = dataclasses.field(default_factory=list)
  id_columns: list[str] = dataclasses.field(default_factory=list)
  time_column: str | None = None
  # The cyclical features derived from the time column (input_pipeline/time_features.py), by
  # their names among numeric_features; empty: none, and the time column is not served.
  time_features: list[str] = dataclasses.field(default_factory=list)
  # The frequency and fraud-rate features of high-cardinality categorical columns
  # (input_pipeline/category_stats.py), as `CategoryStats.to_dict`; None: none.
  stats: dict | None = None

  @property
  def category_stats(self) -> category_stats.CategoryStats | None:
    """`stats` parsed, once for each value `stats` takes (it is set when the fit finishes)."""
    cached = self.__dict__.get("_parsed_stats")
    if cached is None or cached[0] is not self.stats:
      cached = (self.stats, category_stats.CategoryStats.from_dict(self.stats))
      self.__dict__["_parsed_stats"] = cached
    return cached[1]

  @property
  def served_numeric(self) -> list[str]:
    """The numeric columns the model uses: all but a dropped `Time`."""
    return [c for c in self.numeric_columns if not (self.drop_time and c == "Time")]

  @property
  def raw_columns(self) -> list[str]:
    """The columns a row to score must have (exactly those the model uses): numeric, then
    categorical, then the time column where time features are derived from it."""
    timed = [self.time_column] if self.time_features else []
    return self.served_numeric + list(self.categorical_columns) + timed

  def output_names(self) -> list[str]:
    names = list(self.numeric_features) + [f"{n} missing" for n in self.missing_indicators]
    for column, vocabulary in zip(self.categorical_columns, self.vocabularies):
      names += [f"{column}={v}" for v in (OOV, MISSING, *vocabulary)]
    return names + (self.category_stats.names() if self.stats else [])

  def clean(self, numeric: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """Raw numeric columns [n, len(numeric_columns)] float64 (and the time column's seconds
    [n], where time features are derived) to cleaned numeric features."""
    out = dict(zip(self.numeric_columns, np.asarray(numeric, np.float64).T))
    if self.time_features:
      out.update(zip(self.time_features, time_features.derive(times).T))
    if self.drop_time:
      out.pop("Time")
    if self.log_amount:
      amount = out.pop("Amount")
      with np.errstate(invalid="ignore"):
        negative = amount < 0
      if negative.any():
        raise DataError(f"column 'Amount' holds {int(negative.sum())} negative value(s), e.g. "
                        f"{float(amount[negative][0])!r}: the credit-card cleaning takes "
                        "log(Amount + 0.001), which needs Amount >= 0; rename the column to "
                        "keep it as it is")
      out["Log Amount"] = np.log(amount + AMOUNT_EPS)
    if not self.numeric_features:
      return np.zeros((len(numeric), 0))
    return np.stack([out[n] for n in self.numeric_features], axis=1)

  def encode(self, cleaned: np.ndarray, categorical: list[np.ndarray],
             index: np.ndarray | None = None, in_train: np.ndarray | None = None) -> np.ndarray:
    """Cleaned numeric features and category strings to model features (float32). `in_train`
    marks the training rows (and `index` gives every row's number in the file): their fraud
    rates are out of fold (input_pipeline/category_stats.py)."""
    gaps = np.isnan(cleaned)
    # In place from here: each temporary is the size of the whole feature matrix.
    z = np.where(gaps, np.asarray(self.medians), cleaned)
    z -= np.asarray(self.mean)
    z /= np.asarray(self.scale)
    np.clip(z, -self.clip, self.clip, out=z)
    blocks = [z, gaps[:, [self.numeric_features.index(n) for n in self.missing_indicators]]]
    for values, vocabulary in zip(categorical, self.vocabularies):
      ids = pd.Index(vocabulary).get_indexer(values.astype(str)) + 2  # -1 (unseen) -> 1 -> 0
      ids[ids == 1] = 0
      ids[values == ""] = 1
      blocks.append(np.eye(len(vocabulary) + 2, dtype=np.float32)[ids])
    if self.stats:
      strings = dict(zip(self.categorical_columns, categorical))
      blocks.append(self.category_stats.encode(strings, index, in_train, cleaned))
    return np.concatenate([b.astype(np.float32) for b in blocks], axis=1)

  def __call__(self, frame: pd.DataFrame) -> np.ndarray:
    """Raw rows (with the CSV's column names; extra columns ignored) to model features."""
    missing = [c for c in self.raw_columns if c not in frame.columns]
    if missing:
      raise DataError(f"missing feature column(s): {', '.join(missing)}")
    # Refused as training refuses them: text in a numeric column is no gap.
    numeric = columns_lib.served_values(frame, self.served_numeric,
                                        ["Amount"] if self.log_amount else [])
    if self.drop_time:  # Not read: `clean` drops it.
      numeric = np.insert(numeric, self.numeric_columns.index("Time"), np.nan, axis=1)
    categorical = [columns_lib.category_strings(frame[c]) for c in self.categorical_columns]
    times = (columns_lib.parse_times(frame[self.time_column], self.time_column)
             if self.time_features else None)
    return self.encode(self.clean(numeric, times), categorical)

  def tf_call(self, raw: dict, tables: list = ()):
    """The TensorFlow twin of `__call__`, for serving: {raw column: [batch] tensor} in.

    Numeric columns float64 (NaN for a gap): Time in seconds and Amount in cents need more than
    float32's 7 digits to be cleaned as the numpy path cleans them; the time column, where time
    features are derived, in seconds. Categorical columns are strings ("" for a gap).
    `tables`: `category_stats.tf_tables` of this preprocessing, held by the caller's module.
    Returns float32 [batch, len(feature_names)], equal to `__call__` on the same rows.
    """
    import tensorflow as tf
    blocks, cleaned = [], None
    if self.numeric_features:
      columns = {n: tf.cast(raw[n], tf.float64) for n in self.served_numeric}
      self._tf_refuse(columns)
      if self.log_amount:
        columns["Log Amount"] = tf.math.log(columns.pop("Amount") + AMOUNT_EPS)
      if self.time_features:
        derived = time_features.derive_tf(raw[self.time_column])
        columns.update({n: derived[:, i] for i, n in enumerate(self.time_features)})
      cleaned = tf.stack([columns[n] for n in self.numeric_features], axis=1)
      gaps = tf.math.is_nan(cleaned)
      x = tf.where(gaps, tf.constant(self.medians, tf.float64), cleaned)
      z = (x - tf.constant(self.mean, tf.float64)) / tf.constant(self.scale, tf.float64)
      blocks.append(tf.cast(tf.clip_by_value(z, -self.clip, self.clip), tf.float32))
      if self.missing_indicators:
        index = [self.numeric_features.index(n) for n in self.missing_indicators]
        blocks.append(tf.cast(tf.gather(gaps, index, axis=1), tf.float32))
    for column, vocabulary in zip(self.categorical_columns, self.vocabularies):
      values = tf.reshape(raw[column], [-1, 1])
      # A comparison against each of the (capped) vocabulary's values: no lookup table to
      # track and save, and exactly the numpy path's matching.
      hits = tf.cast(tf.equal(values, tf.constant(vocabulary or [""], tf.string)[None, :]),
                     tf.float32)[:, :len(vocabulary)]
      gap = tf.cast(tf.equal(values, ""), tf.float32)
      other = 1.0 - gap - tf.reduce_sum(hits, axis=1, keepdims=True)
      blocks.append(tf.concat([other, gap, hits], axis=1))
    if self.stats:
      blocks.append(category_stats.tf_features(self.category_stats, raw, tables, cleaned))
    return tf.concat(blocks, axis=1)

  def _tf_refuse(self, columns: dict) -> None:
    """In the graph, what `columns.served_values` refuses in numpy: a caller of the SavedModel
    signature gets an InvalidArgumentError naming the column, never a silent median."""
    import tensorflow as tf
    for name, x in columns.items():
      tf.debugging.Assert(
          tf.reduce_all(tf.math.is_nan(x) | (tf.abs(x) <= columns_lib.MAX_ABS_FEATURE)),
          [f"column '{name}' holds Inf or a value beyond ±{columns_lib.MAX_ABS_FEATURE:g}"])
    if self.log_amount:
      tf.debugging.Assert(tf.reduce_all(~(columns["Amount"] < 0)),
                          ["column 'Amount' holds a negative value: the credit-card cleaning "
                           "takes log(Amount + 0.001)"])

  def save(self, path: str) -> None:
    with open(path, "w") as f:
      json.dump(dataclasses.asdict(self), f, indent=2)

  @classmethod
  def load(cls, path: str) -> "Preprocessor":
    with open(path) as f:
      return cls(**json.load(f))


@dataclasses.dataclass
class Splits:
  """Encoded float32 features and int labels for each split."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  preprocessor: Preprocessor

  @property
  def num_features(self) -> int:
    return self.x_train.shape[1]

  def counts(self) -> dict[str, dict[str, int]]:
    return {name: {"rows": int(len(y)), "positives": int(y.sum())}
            for name, y in (("train", self.y_train), ("validation", self.y_val),
                            ("test", self.y_test))}


def _cleaning(roles: columns_lib.Roles, config) -> tuple[bool, bool]:
  """(drop Time, log Amount): on the credit-card set itself (its columns exactly, as fetched,
  synthetic, or a copy passed by --data_path), or anywhere with --creditcard_cleaning=on."""
  if config.creditcard_cleaning == "off":
    return False, False
  if config.creditcard_cleaning == "auto":
    named = {roles.label, *roles.numeric, *roles.categorical, *roles.ids, roles.time} - {None}
    if not sources.is_creditcard_table(named):
      return False, False
  return "Time" in roles.numeric, "Amount" in roles.numeric


def unfitted_preprocessor(roles: columns_lib.Roles, config) -> Preprocessor:
  """The cleaning steps for these column roles, with no statistics yet.

  Shared by the in-memory path (below) and `--mode=prepare` (input_pipeline/prepare.py), so
  both feed the model identical features.
  """
  raw = list(roles.numeric)
  drop_time, log_amount = _cleaning(roles, config)
  if drop_time or log_amount:
    logging.info("Credit-card cleaning (--creditcard_cleaning=%s):%s%s",
                 config.creditcard_cleaning, " drop Time;" if drop_time else "",
                 " Amount -> log(Amount + 0.001)" if log_amount else "")
  names = [c for c in raw if not (drop_time and c == "Time")]
  if log_amount:
    names = [c for c in names if c != "Amount"] + ["Log Amount"]
  derived = ([f"{roles.time} {n}" for n in time_features.NAMES]
             if roles.time and config.time_features else [])
  names += derived
  if not names and not roles.categorical:
    raise DataError("no feature columns are left after dropping 'Time'")
  return Preprocessor(numeric_columns=raw, numeric_features=names, drop_time=drop_time,
                      log_amount=log_amount, mean=[], scale=[], clip=config.clip,
                      label_column=config.label_column,
                      categorical_columns=list(roles.categorical), id_columns=list(roles.ids),
                      time_column=roles.time, time_features=derived)


def split_and_encode(frame: pd.DataFrame, config) -> Splits:
  """Checks, cleans, splits and encodes a raw frame as the config says."""
  frame = frame.set_axis(np.arange(len(frame)), axis=0)
  roles = columns_lib.assign_roles(frame, config)
  rows = columns_lib.read_rows(frame, roles, drop_invalid_rows=config.drop_invalid_rows)
  pre = unfitted_preprocessor(roles, config)
  cleaned = pre.clean(rows.numeric, rows.times)
  rows.numeric = None  # Cleaned now: not held through the fit and the encoding.
  split = split_rows(rows, config)
  train = split == 0
  fitter = Fitter(pre, config)
  fitter.update(rows.index[train], cleaned[train], [c[train] for c in rows.categorical],
                rows.labels[train])
  pre = fitter.finish()
  x = pre.encode(cleaned, rows.categorical, rows.index, train)
  parts = [(x[split == s], rows.labels[split == s]) for s in range(3)]
  return Splits(x_train=parts[0][0], y_train=parts[0][1], x_val=parts[1][0], y_val=parts[1][1],
                x_test=parts[2][0], y_test=parts[2][1], preprocessor=pre)
