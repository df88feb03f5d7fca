"""Each numeric feature against the usual value of a high-cardinality category's value.

A large sale is not the same signal at a cafe as at a jeweller: fraud teams compare an amount with
the merchant's (or the card's, the terminal's) usual one. For every column that gets
the category statistics (input_pipeline/category_stats.py) and every numeric feature, one more
feature is added (`--category_deviations`):

  `<column> vs usual <feature>`   (s - usual) / sd, clipped, where s = sign(x) log(1 + |x|) of
                                  the row's cleaned value, usual the value's smoothed mean of s
                                  over the training rows, (sum + k m) / (n + k), m and sd the
                                  mean and standard deviation of s over all training rows; 0
                                  where the row's value is a gap.

The pseudo-rows k are fitted per column and feature on the training rows, by empirical Bayes
(the one-way random-effects model's method of moments): k = w / b, w the variance of s within
a value and b the variance of the values' true means between values. A column whose values
differ much (a jeweller's tickets against a cafe's) trusts a value's own few rows; one whose
values barely differ pulls them to m. k stays in [MIN_PRIOR_ROWS, MAX_PRIOR_ROWS]; an export
without fitted k (older runs) reads PRIOR_ROWS.

The signed log makes the comparison a ratio for skewed positive columns (amounts) and leaves
small ones nearly as they are. No label is involved, so nothing leaks; but a training row is
part of its own value's mean, which a served row never is: so each training row's usual value
leaves the row itself out (its own s taken off the sum and its count off n), and a training row
reads as a served row of the same value would. Values never seen in training read the mean m.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd

# Pseudo-rows at the overall mean added to every value's own rows: the fitted k's bounds (the
# lower keeps a value seen once finite when a training row leaves itself out; the upper stands
# for "no difference between values"), and the k of exports made before k was fitted.
MIN_PRIOR_ROWS, MAX_PRIOR_ROWS = 1.0, 1e6
PRIOR_ROWS = 20.0


def signed_log(x):
  """sign(x) log(1 + |x|), NaN kept (numpy, or TensorFlow for a tensor)."""
  if isinstance(x, np.ndarray):
    return np.sign(x) * np.log1p(np.abs(x))
  import tensorflow as tf
  return tf.sign(x) * tf.math.log1p(tf.abs(x))


@dataclasses.dataclass
class Usual:
  """The fitted sums: per column, per kept value (in the category statistics' order), the sum
  of s and the count of present values of each feature."""

  features: list[str]
  mean: list[float]
  scale: list[float]
  clip: float
  columns: list[str]
  sums: list[list[list[float]]]     # [column][value][feature]
  counts: list[list[list[int]]]     # [column][value][feature]
  prior_rows: list[list[float]] | None = None  # [column][feature]: k; None: PRIOR_ROWS

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def names(self) -> list[str]:
    return [f"{c} vs usual {f}" for c in self.columns for f in self.features]

  @functools.cached_property
  def arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per column (sums, counts) float64 [values + 1, features]; the last row (unseen) zero."""
    width = len(self.features)
    return [tuple(np.vstack([np.asarray(a, np.float64).reshape(-1, width), np.zeros(width)])
                  for a in pair) for pair in zip(self.sums, self.counts)]

  def pseudo_rows(self, column: int) -> np.ndarray:
    """k [features] of the column at position `column`."""
    if self.prior_rows is None:
      return np.full(len(self.features), PRIOR_ROWS)
    return np.asarray(self.prior_rows[column], np.float64)

  def usual(self, sums: np.ndarray, counts: np.ndarray, column: int) -> np.ndarray:
    """The smoothed mean of s from a value's sums and counts (no rows: the overall mean)."""
    k = self.pseudo_rows(column)
    return (sums + k * np.asarray(self.mean)) / (counts + k)

  def _deviation(self, s, sums, counts, column):
    z = (s - self.usual(sums, counts, column)) / np.asarray(self.scale)
    return np.clip(np.where(np.isnan(z), 0.0, z), -self.clip, self.clip)

  def encode(self, ids: list[np.ndarray], cleaned: np.ndarray,
             in_train: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, columns * features]: `ids` each column's value rows (the category
    statistics' `ids`, unseen: the last), `cleaned` the rows' cleaned numeric features with
    NaN gaps; the rows in `in_train` leave themselves out of their value's mean."""
    s = signed_log(np.asarray(cleaned, np.float64))
    blocks = []
    for column, ((sums, counts), column_ids) in enumerate(zip(self.arrays, ids)):
      own_sums, own_counts = sums[column_ids], counts[column_ids]
      if in_train is not None and in_train.any():
        present = ~np.isnan(s[in_train])
        seen = (column_ids[in_train] < len(sums) - 1)[:, None] & present
        own_sums[in_train] -= np.where(seen, s[in_train], 0.0)
        own_counts[in_train] -= seen
      blocks.append(self._deviation(s, own_sums, own_counts, column))
    return np.concatenate(blocks, axis=1).astype(np.float32)

  def tf_features(self, ids: list, x):
    """The TensorFlow twin of `encode` for served rows: `x` float64 [batch, features] (NaN
    gaps), `ids` each column's value rows [batch] (int64)."""
    import tensorflow as tf
    s = signed_log(x)
    blocks = []
    for column, ((sums, counts), column_ids) in enumerate(zip(self.arrays, ids)):
      usual = tf.constant(self.usual(sums, counts, column), tf.float64)
      z = (s - tf.gather(usual, column_ids)) / tf.constant(self.scale, tf.float64)
      z = tf.where(tf.math.is_nan(z), tf.zeros_like(z), z)
      blocks.append(tf.cast(tf.clip_by_value(z, -self.clip, self.clip), tf.float32))
    return tf.concat(blocks, axis=1)


class UsualFitter:
  """Accumulates, per categorical column, each value's sum of s and count of present values of
  each numeric feature, and the moments of s over all training rows, chunk by chunk."""

  def __init__(self, columns: list[str], features: list[str]):
    self.columns, self.features = list(columns), list(features)
    self.sums = [None for _ in self.columns]  # DataFrame: value -> sum_j, count_j
    self.total = np.zeros((3, len(self.features)))  # count, sum, sum of squares of s

  def update(self, strings: list[np.ndarray], numeric: np.ndarray) -> None:
    """`strings`: each categorical column's values as str; `numeric`: the cleaned features."""
    s = signed_log(np.asarray(numeric, np.float64))
    present = ~np.isnan(s)
    self.total += [present.sum(axis=0), np.nansum(s, axis=0), np.nansum(s * s, axis=0)]
    # Columns 0..F-1: s; F..2F-1: s squared (for the within-value variance of k's fit).
    frame = pd.DataFrame(np.concatenate([s, s * s], axis=1))
    for i, values in enumerate(strings):
      grouped = frame.groupby(values).agg(["sum", "count"])
      self.sums[i] = grouped if self.sums[i] is None else self.sums[i].add(grouped,
                                                                           fill_value=0)

  def finish(self, chosen: dict[str, list[str]], clip: float) -> Usual | None:
    """The sums of the `chosen` columns ({column: its kept values, in order}); None if there
    is no numeric feature or no chosen column."""
    if not self.features or not chosen:
      return None
    count, total, squares = self.total
    with np.errstate(invalid="ignore", divide="ignore"):
      mean = np.where(count > 0, total / count, 0.0)
      scale = np.sqrt(np.maximum(np.where(count > 0, squares / count, 0.0) - mean ** 2, 0.0))
    scale[~(scale > 0)] = 1.0
    sums, counts, prior_rows, width = [], [], [], len(self.features)
    for name, grouped in zip(self.columns, self.sums):
      if name not in chosen:
        continue
      every = grouped.xs("sum", axis=1, level=1).to_numpy(np.float64)
      n = grouped.xs("count", axis=1, level=1).to_numpy(np.float64)[:, :width]
      prior_rows.append(fit_pseudo_rows(every[:, :width], n, every[:, width:]).tolist())
      grouped = grouped.reindex(chosen[name], fill_value=0)
      sums.append(grouped.xs("sum", axis=1, level=1).to_numpy(np.float64)[:, :width].tolist())
      counts.append(grouped.xs("count", axis=1, level=1).to_numpy(np.int64)[:, :width].tolist())
    return Usual(features=self.features, mean=mean.tolist(), scale=scale.tolist(),
                 clip=float(clip), columns=list(chosen), sums=sums, counts=counts,
                 prior_rows=prior_rows)


def fit_pseudo_rows(sums: np.ndarray, counts: np.ndarray, squares: np.ndarray) -> np.ndarray:
  """k [features] from every value's sum, count and sum of squares of s [values, features]:
  the within-value variance over the variance between the values' true means, both by the
  method of moments of the one-way random-effects model (unequal counts)."""
  with np.errstate(invalid="ignore", divide="ignore"):
    total, rows = sums.sum(axis=0), counts.sum(axis=0)
    values = (counts > 0).sum(axis=0)
    between_sq = np.where(counts > 0, sums ** 2 / np.maximum(counts, 1), 0.0).sum(axis=0)
    within = (squares.sum(axis=0) - between_sq) / (rows - values)  # pooled variance
    spread = between_sq - total ** 2 / rows  # sum over values of n (value mean - mean)^2
    between = (spread - (values - 1) * within) / (rows - (counts ** 2).sum(axis=0) / rows)
    k = np.where(between > 0, np.maximum(within, 0.0) / between, MAX_PRIOR_ROWS)
  k = np.where((values > 1) & (rows > values) & np.isfinite(k), k, MAX_PRIOR_ROWS)
  return np.clip(k, MIN_PRIOR_ROWS, MAX_PRIOR_ROWS)
