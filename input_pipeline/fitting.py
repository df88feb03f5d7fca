"""The statistics of the training split, accumulated chunk by chunk: one code path for a frame in
memory (one chunk) and for a file read in chunks (`--mode=prepare`), so both fit the same
preprocessing.

Per numeric feature: count, mean and spread of the present values, the count of gaps, and a
sample of values for the median that fills the gaps. Per categorical column: the count of every
value, for the vocabulary.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from input_pipeline import category_stats
from input_pipeline.errors import DataError
from input_pipeline.hashing import splitmix64

# Rows kept for the medians: a bottom-k sample by a hash of the row number, so it does not depend
# on the chunking, is uniform over the training rows, and is all of them up to this many (the
# medians are then exact on a training split the size of the credit-card set's). The sample is
# rows times numeric features, so the cap bounds its memory whatever the file's size.
MEDIAN_SAMPLE_ROWS = 1 << 18


@dataclasses.dataclass
class RunningMoments:
  """Per-column count, mean and sum of squared deviations of the present (non-NaN) values,
  merged chunk by chunk (Chan et al. 1979).

  Merging per-chunk (mean, M2) instead of summing x and x^2 avoids the cancellation of the
  naive formula; the result equals numpy's mean/std over all rows to float64 rounding.
  """

  count: np.ndarray | int = 0
  mean: np.ndarray | None = None
  m2: np.ndarray | None = None

  def merge(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
    """Merges a group of n values per column with this mean and M2."""
    if self.mean is None:
      self.count, self.mean, self.m2 = np.asarray(n, np.int64), mean, m2
      return
    total = self.count + n
    safe = np.maximum(total, 1)
    delta = mean - self.mean
    self.mean = np.where(n > 0, self.mean + delta * (n / safe), self.mean)
    self.m2 = np.where(n > 0, self.m2 + m2 + delta ** 2 * (self.count * n / safe), self.m2)
    self.count = total

  def update(self, x: np.ndarray) -> None:
    """Adds rows [n, columns]; NaN cells are skipped."""
    if len(x) == 0:
      return
    present = ~np.isnan(x)
    n = present.sum(axis=0)
    mean = np.where(present, x, 0.0).sum(axis=0) / np.maximum(n, 1)
    m2 = np.where(present, (x - mean) ** 2, 0.0).sum(axis=0)
    self.merge(n, mean, m2)

  def std(self) -> np.ndarray:
    """Population standard deviation (ddof=0), like `np.std`."""
    return np.sqrt(self.m2 / np.maximum(self.count, 1))


class Fitter:
  """Accumulates the training split's statistics; `finish` turns them into a fitted
  Preprocessor."""

  def __init__(self, pre, config):
    """`pre`: the unfitted preprocessor (its columns and cleaning); `config`: the run's."""
    self.pre = pre
    self.config = config
    self.moments = RunningMoments()
    self.gaps = np.zeros(len(pre.numeric_features), np.int64)
    self.rows = 0
    self._priority = np.zeros(0, np.uint64)
    self._sample = np.zeros((0, len(pre.numeric_features)))
    self._salt = splitmix64(np.full(1, config.seed + 0x5EED, np.uint64))
    self.counts = [collections.Counter() for _ in pre.categorical_columns]
    self.stats = category_stats.StatsFitter(
        pre.categorical_columns, config.seed,
        pre.numeric_features if config.category_deviations else ())

  def update(self, index: np.ndarray, numeric: np.ndarray, categorical: list[np.ndarray],
             labels: np.ndarray) -> None:
    """Adds training rows: file row numbers, cleaned numeric features, category strings,
    labels."""
    self.rows += len(index)
    self.moments.update(numeric)
    self.gaps += np.isnan(numeric).sum(axis=0)
    priority = splitmix64(np.asarray(index, np.uint64) ^ self._salt)
    sample = numeric
    if len(self._priority):  # No copy of a first (or only) chunk: it is kept as it is.
      priority = np.concatenate([self._priority, priority])
      sample = np.concatenate([self._sample, numeric])
    if len(priority) > MEDIAN_SAMPLE_ROWS:
      keep = np.argpartition(priority, MEDIAN_SAMPLE_ROWS)[:MEDIAN_SAMPLE_ROWS]
      priority, sample = priority[keep], sample[keep]
    self._priority, self._sample = priority, sample
    for name, counter, values in zip(self.pre.categorical_columns, self.counts, categorical):
      present = values[values != ""]
      uniques, n = np.unique(present.astype(str), return_counts=True)
      counter.update(dict(zip(uniques.tolist(), n.tolist())))
      if len(counter) > self.config.max_distinct_values:
        raise DataError(f"categorical column '{name}' has more than "
                        f"{self.config.max_distinct_values} distinct values in the training "
                        "split: its vocabulary would not fit in memory; pass "
                        f"--id_columns={name} if it is an identifier, or raise "
                        "--max_distinct_values")
    if self.config.category_stats != "off" and self.pre.categorical_columns:
      self.stats.update(index, categorical, labels, numeric)

  def _vocabulary(self, counter: collections.Counter) -> list[str]:
    """The most frequent values (ties by value) seen at least min_category_count times, capped
    at max_categories; the rest share the out-of-vocabulary bucket."""
    kept = sorted((v for v, n in counter.items() if n >= self.config.min_category_count),
                  key=lambda v: (-counter[v], v))
    return kept[:self.config.max_categories]

  def finish(self):
    """The fitted Preprocessor.

    Gaps are filled with the training median; the mean and scale are those of the filled
    column (the present values merged with one group of gap-many medians, which is what
    scaling the imputed column computes). A column with gaps in training also gets a 0/1
    missing indicator.

    Raises:
      DataError: a numeric feature with no value in any training row.
    """
    pre = self.pre
    names = pre.numeric_features
    empty = [n for n, c in zip(names, np.atleast_1d(self.moments.count)) if c == 0]
    if self.rows and names and empty:
      raise DataError(f"feature column '{empty[0]}' is empty in every training row; drop it")
    with np.errstate(all="ignore"):
      medians = (np.nanmedian(self._sample, axis=0) if len(self._sample) else
                 np.zeros(len(names)))
    if names:
      self.moments.merge(self.gaps, medians, np.zeros(len(names)))
      scale = self.moments.std()
      scale[scale == 0] = 1.0  # A constant column would divide by zero: centred, unscaled.
      pre.mean, pre.scale = self.moments.mean.tolist(), scale.tolist()
    pre.medians = medians.tolist()
    pre.missing_indicators = [n for n, g in zip(names, self.gaps) if g > 0]
    pre.vocabularies = [self._vocabulary(c) for c in self.counts]
    chosen = category_stats.choose(pre.categorical_columns, [len(c) for c in self.counts],
                                   self.config.category_stats, self.config.max_categories)
    stats = self.stats.finish(chosen, pre.clip)
    pre.stats = stats.to_dict() if stats else None
    pre.feature_names = pre.output_names()
    return pre
