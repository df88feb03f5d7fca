"""Frequency and out-of-fold fraud-rate features of high-cardinality categorical columns.

A merchant or terminal ID has thousands of values, most of them rare: a one-hot block capped at
--max_categories keeps the largest few and sends the rest to one out-of-vocabulary bucket, where
their own risk is lost. For such a column (`--category_stats`; auto: a column with more distinct
training values than --max_categories) two numeric features are added after the one-hot blocks:

  `<column> log count`   log(1 + the value's rows in the training split): how common it is;
  `<column> fraud rate`  the log-odds of the value's smoothed fraud rate in the training split,
                         (positives + PRIOR_ROWS * p) / (rows + PRIOR_ROWS), p the training
                         split's fraud rate, so a rare value leans on p.

A fraud rate read off the rows it is scored on leaks their labels (a value seen once, with a
fraud, would score as certain fraud). So each training row's rate is out of fold: the training
rows are cut into FOLDS folds by a hash of their row number, and a row's rate counts only the
other folds' rows (as CatBoost's and scikit-learn's `TargetEncoder` do). Validation, test and
served rows, which no statistic was fitted on, get the rate of the whole training split. Both
features are then standardised over the training rows and clipped like the numeric features.
Values never seen in training (and values beyond the MAX_VALUES most frequent) get the features
of a value with no rows: log count 0 and the training rate.

Each numeric feature is also compared with the value's usual one
(input_pipeline/category_usual.py): those features follow every column's two.

The fitted values are held per value in `Preprocessor.stats` (`CategoryStats.to_dict`), the
same tables the export looks values up in, so serving reads a value as training did.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd

from input_pipeline import category_usual
from input_pipeline.hashing import splitmix64

FOLDS = 5
# Pseudo-rows at the training fraud rate added to every value's own rows.
PRIOR_ROWS = 20.0
# Values kept per column, the most frequent first (ties by value); the rest read as unseen.
MAX_VALUES = 200_000
CHOICES = ("auto", "on", "off")
SUFFIXES = ("log count", "fraud rate")


def folds(index: np.ndarray, seed: int) -> np.ndarray:
  """The fold of each training row, from its row number in the file: chunking-independent."""
  salt = splitmix64(np.full(1, seed + 0xF01D, np.uint64))
  return (splitmix64(np.asarray(index, np.uint64) ^ salt) % np.uint64(FOLDS)).astype(np.int64)


def _log_odds(positives, rows, prior: float) -> np.ndarray:
  rate = (positives + PRIOR_ROWS * prior) / (rows + PRIOR_ROWS)
  return np.log(rate) - np.log1p(-rate)


@dataclasses.dataclass
class ColumnStats:
  """One column's fitted statistics: per kept value, its rows and positives in each fold."""

  column: str
  values: list[str]
  rows: list[list[int]]        # [value][fold]
  positives: list[list[int]]   # [value][fold]
  mean: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])
  scale: list[float] = dataclasses.field(default_factory=lambda: [1.0, 1.0])

  @functools.cached_property
  def index(self) -> pd.Index:
    """The kept values, for their positions."""
    return pd.Index(self.values)

  @functools.cached_property
  def counts(self) -> tuple[np.ndarray, np.ndarray]:
    """(rows, positives), float64 [len(values) + 1, FOLDS]; the last row, an unseen value's,
    is zero."""
    return tuple(np.vstack([np.asarray(a, np.float64).reshape(-1, FOLDS), np.zeros(FOLDS)])
                 for a in (self.rows, self.positives))

  def ids(self, strings: np.ndarray) -> np.ndarray:
    """Each string's row in `counts` (unseen: the last)."""
    ids = self.index.get_indexer(strings.astype(str))
    ids[ids < 0] = len(self.values)
    return ids

  def raw_features(self, prior: float) -> np.ndarray:
    """[len(values) + 1, 2] float64 before scaling: each value's log count and fraud rate over
    the whole training split (the last row: an unseen value)."""
    rows, positives = (a.sum(axis=1) for a in self.counts)
    return np.stack([np.log1p(rows), _log_odds(positives, rows, prior)], axis=1)

  def scaled(self, raw: np.ndarray, clip: float) -> np.ndarray:
    return np.clip((raw - np.asarray(self.mean)) / np.asarray(self.scale), -clip, clip)


@dataclasses.dataclass
class CategoryStats:
  """The fitted features of every column that has them."""

  prior: float
  seed: int
  clip: float
  columns: list[ColumnStats]
  usual: category_usual.Usual | None = None
  # Each column's `table`, made on first use.
  _tables: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

  def to_dict(self) -> dict:
    return {"prior": self.prior, "seed": self.seed, "clip": self.clip,
            "columns": [dataclasses.asdict(c) for c in self.columns],
            "usual": self.usual.to_dict() if self.usual else None}

  @classmethod
  def from_dict(cls, d: dict | None) -> "CategoryStats | None":
    if not d:
      return None
    usual = d.get("usual")
    return cls(prior=d["prior"], seed=d["seed"], clip=d["clip"],
               columns=[ColumnStats(**c) for c in d["columns"]],
               usual=category_usual.Usual(**usual) if usual else None)

  def names(self) -> list[str]:
    names = [f"{c.column} {s}" for c in self.columns for s in SUFFIXES]
    return names + (self.usual.names() if self.usual else [])

  def table(self, i: int) -> np.ndarray:
    """Column i's scaled features per value, float32 [len(values) + 1, 2] (last: unseen)."""
    if i not in self._tables:
      c = self.columns[i]
      self._tables[i] = c.scaled(c.raw_features(self.prior), self.clip).astype(np.float32)
    return self._tables[i]

  def encode(self, strings: dict[str, np.ndarray], index: np.ndarray | None = None,
             in_train: np.ndarray | None = None, cleaned: np.ndarray | None = None,
             ) -> np.ndarray:
    """float32 [n, len(names())] of the category strings by column (gaps "") and the rows'
    cleaned numeric features, the rows in `in_train` (with their file row numbers `index`) out
    of fold. Needs one column at least."""
    blocks, ids = [], [c.ids(strings[c.column]) for c in self.columns]
    for i, (c, column_ids) in enumerate(zip(self.columns, ids)):
      out = self.table(i)[column_ids]
      if in_train is not None and in_train.any():
        out[in_train] = self._out_of_fold(c, column_ids[in_train],
                                          folds(index[in_train], self.seed))
      blocks.append(out)
    if self.usual:
      blocks.append(self.usual.encode(ids, cleaned, in_train))
    return np.concatenate(blocks, axis=1)

  def _out_of_fold(self, c: ColumnStats, ids: np.ndarray, fold: np.ndarray) -> np.ndarray:
    rows, pos = c.counts
    total_rows = rows.sum(axis=1)[ids]
    other_rows = total_rows - rows[ids, fold]
    other_pos = pos.sum(axis=1)[ids] - pos[ids, fold]
    raw = np.stack([np.log1p(total_rows), _log_odds(other_pos, other_rows, self.prior)], axis=1)
    return c.scaled(raw, self.clip).astype(np.float32)


class StatsFitter:
  """Accumulates, per categorical column, each value's rows and positives in each fold of the
  training rows, chunk by chunk."""

  def __init__(self, columns: list[str], seed: int, numeric: list[str] = ()):
    self.columns, self.seed = list(columns), int(seed)
    self.counts = [None for _ in self.columns]  # DataFrame: value -> rows_f, pos_f
    self.rows = self.positives = 0
    # `numeric`: the numeric features to compare with each value's usual ones.
    self.usual = category_usual.UsualFitter(columns, list(numeric)) if len(numeric) else None

  def update(self, index: np.ndarray, categorical: list[np.ndarray], labels: np.ndarray,
             numeric: np.ndarray | None = None) -> None:
    labels = np.asarray(labels, np.int64)
    self.rows += len(labels)
    self.positives += int(labels.sum())
    fold = folds(index, self.seed)
    strings = [values.astype(str) for values in categorical]  # once, for both fits
    for i, values in enumerate(strings):
      frame = pd.DataFrame({"v": values, "f": fold, "y": labels})
      grouped = frame.groupby(["v", "f"]).y.agg(["size", "sum"]).unstack("f", fill_value=0)
      grouped = grouped.reindex(columns=pd.MultiIndex.from_product(
          [["size", "sum"], range(FOLDS)]), fill_value=0)
      self.counts[i] = grouped if self.counts[i] is None else self.counts[i].add(
          grouped, fill_value=0)
    if self.usual:
      self.usual.update(strings, numeric)

  def finish(self, chosen: list[str], clip: float) -> CategoryStats | None:
    """The statistics of the `chosen` columns, scaled over the training rows; None if none."""
    if not chosen or not self.rows:
      return None
    prior = self.positives / self.rows
    out = []
    for name, counts in zip(self.columns, self.counts):
      if name not in chosen or counts is None:
        continue
      counts = counts.astype(np.int64)
      total = counts["size"].sum(axis=1).to_numpy()
      # The most frequent first, ties by value.
      order = np.lexsort((counts.index.to_numpy(str), -total))
      counts = counts.iloc[order[:MAX_VALUES]]
      c = ColumnStats(column=name, values=[str(v) for v in counts.index],
                      rows=counts["size"].to_numpy().tolist(),
                      positives=counts["sum"].to_numpy().tolist())
      c.mean, c.scale = _training_moments(c, prior, int(self.rows))
      out.append(c)
    usual = self.usual.finish({c.column: c.values for c in out}, clip) if self.usual else None
    return CategoryStats(prior=prior, seed=self.seed, clip=float(clip), columns=out,
                         usual=usual)


def _training_moments(c: ColumnStats, prior: float, n_train: int) -> tuple[list, list]:
  """Mean and standard deviation of the two features over the training rows, as they are
  encoded (out of fold); the rows of values beyond MAX_VALUES count as unseen ones."""
  rows, pos = (a[:-1] for a in c.counts)
  total_rows, total_pos = rows.sum(axis=1, keepdims=True), pos.sum(axis=1, keepdims=True)
  count = np.broadcast_to(np.log1p(total_rows), rows.shape)
  rate = _log_odds(total_pos - pos, total_rows - rows, prior)
  unseen = n_train - rows.sum()
  weights = np.append(rows.ravel(), unseen)
  feats = np.stack([np.append(count.ravel(), 0.0),
                    np.append(rate.ravel(), _log_odds(0.0, 0.0, prior))], axis=1)
  mean = (weights[:, None] * feats).sum(axis=0) / weights.sum()
  var = (weights[:, None] * (feats - mean) ** 2).sum(axis=0) / weights.sum()
  scale = np.sqrt(var)
  scale[scale == 0] = 1.0
  return mean.tolist(), scale.tolist()


def choose(columns: list[str], distinct: list[int], mode: str, max_categories: int) -> list[str]:
  """The columns that get the features: every one (on), none (off), or those whose distinct
  training values outnumber --max_categories (auto)."""
  if mode == "on":
    return list(columns)
  if mode == "off":
    return []
  return [c for c, n in zip(columns, distinct) if n > max_categories]


def tf_features(stats: CategoryStats, raw: dict, tables: list, numeric=None):
  """The TensorFlow twin of `encode` for served rows (no fold): [batch, len(names())];
  `numeric` the rows' cleaned numeric features, float64 with NaN gaps."""
  import tensorflow as tf
  blocks, ids = [], []
  for i, (c, table) in enumerate(zip(stats.columns, tables)):
    column_ids = table.lookup(tf.reshape(raw[c.column], [-1]))
    ids.append(tf.where(column_ids < 0, tf.constant(len(c.values), tf.int64), column_ids))
    blocks.append(tf.gather(tf.constant(stats.table(i)), ids[-1]))
  if stats.usual:
    blocks.append(stats.usual.tf_features(ids, numeric))
  return tf.concat(blocks, axis=1)


def tf_tables(stats: CategoryStats | None) -> list:
  """One string -> value index table per column, to be held by the serving module."""
  import tensorflow as tf
  if stats is None:
    return []
  return [tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(c.values or [""], tf.string),
                                          tf.range(max(len(c.values), 1), dtype=tf.int64)),
      default_value=-1) for c in stats.columns]
