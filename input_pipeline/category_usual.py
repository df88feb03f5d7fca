"""Each numeric feature against the usual value of a high-cardinality category's value.

A large sale is not the same signal at a cafe as at a jeweller: fraud teams compare an amount with
the merchant's (or the card's, the terminal's) usual one. For every column that gets
the category statistics (input_pipeline/category_stats.py) and every numeric feature, one more
feature is added (`--category_deviations`):

  `<column> vs usual <feature>`   (s - usual) / sd, clipped, where s = sign(x) log(1 + |x|) of
                                  the row's cleaned value, usual the value's smoothed mean of s
                                  over the training rows, (sum + PRIOR_ROWS * m) / (n +
                                  PRIOR_ROWS), m and sd the mean and standard deviation of s
                                  over all training rows; 0 where the row's value is a gap.

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

# Pseudo-rows at the overall mean added to every value's own rows.
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

  def usual(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The smoothed mean of s from a value's sums and counts (no rows: the overall mean)."""
    return (sums + PRIOR_ROWS * np.asarray(self.mean)) / (counts + PRIOR_ROWS)

  def _deviation(self, s, sums, counts):
    z = (s - self.usual(sums, counts)) / np.asarray(self.scale)
    return np.clip(np.where(np.isnan(z), 0.0, z), -self.clip, self.clip)

  def encode(self, ids: list[np.ndarray], cleaned: np.ndarray,
             in_train: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, columns * features]: `ids` each column's value rows (the category
    statistics' `ids`, unseen: the last), `cleaned` the rows' cleaned numeric features with
    NaN gaps; the rows in `in_train` leave themselves out of their value's mean."""
    s = signed_log(np.asarray(cleaned, np.float64))
    blocks = []
    for (sums, counts), column_ids in zip(self.arrays, ids):
      own_sums, own_counts = sums[column_ids], counts[column_ids]
      if in_train is not None and in_train.any():
        present = ~np.isnan(s[in_train])
        seen = (column_ids[in_train] < len(sums) - 1)[:, None] & present
        own_sums[in_train] -= np.where(seen, s[in_train], 0.0)
        own_counts[in_train] -= seen
      blocks.append(self._deviation(s, own_sums, own_counts))
    return np.concatenate(blocks, axis=1).astype(np.float32)

  def tf_features(self, ids: list, x):
    """The TensorFlow twin of `encode` for served rows: `x` float64 [batch, features] (NaN
    gaps), `ids` each column's value rows [batch] (int64)."""
    import tensorflow as tf
    s = signed_log(x)
    blocks = []
    for (sums, counts), column_ids in zip(self.arrays, ids):
      usual = tf.constant(self.usual(sums, counts), tf.float64)
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
    frame = pd.DataFrame(s, columns=range(len(self.features)))
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
    sums, counts = [], []
    for name, grouped in zip(self.columns, self.sums):
      if name not in chosen:
        continue
      grouped = grouped.reindex(chosen[name], fill_value=0)
      sums.append(grouped.xs("sum", axis=1, level=1).to_numpy(np.float64).tolist())
      counts.append(grouped.xs("count", axis=1, level=1).to_numpy(np.int64).tolist())
    return Usual(features=self.features, mean=mean.tolist(), scale=scale.tolist(),
                 clip=float(clip), columns=list(chosen), sums=sums, counts=counts)
