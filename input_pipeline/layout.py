"""What the positions of the model's feature vector hold: the layout a model family is given.

The preprocessing (input_pipeline/preprocessing.py) writes, in this order: the numeric features
(standardised and clipped), one 0/1 flag per numeric column that had gaps in training, then each
categorical column as a one-hot block (out-of-vocabulary, missing, then its vocabulary), then
the frequency and fraud-rate features of high-cardinality categorical columns. A model
that embeds numeric or categorical features itself (engine/models/) reads the positions here,
not the preprocessing's internals.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Quantiles of each numeric feature given to the models: the 0th to the 100th percentile in
# QUANTILES - 1 equal steps (bins of piecewise-linear encodings, quantile transforms).
QUANTILES = 65
# Training rows the quantiles are computed on at most (a seeded sample beyond that).
QUANTILE_ROWS = 200_000


@dataclasses.dataclass(frozen=True)
class CategoricalBlock:
  """One categorical column's one-hot block: `cardinality` positions from `offset`."""

  name: str
  cardinality: int
  offset: int


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
  """The model's feature vector [F]: which positions are what.

  numeric: positions of the numeric features; numeric_names their names.
  missing_flags: positions of the 0/1 missing indicators.
  categorical: the one-hot blocks.
  train_rows: training rows [n, F] as the model sees them (or a function returning them), or
    None; `quantiles` is computed from them when a model first reads it (most never do).
  seed: seeds the sample `quantiles` takes when there are more rows than QUANTILE_ROWS.
  """

  num_features: int
  numeric: tuple[int, ...]
  numeric_names: tuple[str, ...] = ()
  missing_flags: tuple[int, ...] = ()
  categorical: tuple[CategoricalBlock, ...] = ()
  train_rows: object = dataclasses.field(default=None, compare=False, repr=False)
  seed: int = 0

  @functools.cached_property
  def quantiles(self) -> np.ndarray | None:
    """float32 [len(numeric), QUANTILES]: the training split's quantiles of each numeric
    feature as the model sees it (after scaling), ascending (equal neighbours possible); None
    without training rows."""
    rows = self.train_rows() if callable(self.train_rows) else self.train_rows
    if rows is None or not self.numeric or not len(rows):
      return None
    rows = np.asarray(rows)
    if len(rows) > QUANTILE_ROWS:
      pick = np.random.default_rng(self.seed).choice(len(rows), QUANTILE_ROWS, replace=False)
      rows = rows[np.sort(pick)]
    numeric = rows[:, list(self.numeric)].astype(np.float64)
    return np.quantile(numeric, np.linspace(0.0, 1.0, QUANTILES), axis=0).T.astype(np.float32)


def from_preprocessor(pre, train_x=None, *, seed: int = 0) -> FeatureLayout:
  """The layout of what `pre` (a fitted `preprocessing.Preprocessor`) writes.

  Args:
    pre: the fitted preprocessing.
    train_x: optional; training rows [n, F] as the model sees them (or a function returning
      them), for the quantiles.
    seed: seeds the quantiles' sample.
  """
  n_numeric, n_missing = len(pre.numeric_features), len(pre.missing_indicators)
  offset = n_numeric + n_missing
  blocks = []
  for name, vocabulary in zip(pre.categorical_columns, pre.vocabularies):
    blocks.append(CategoricalBlock(name=name, cardinality=len(vocabulary) + 2, offset=offset))
    offset += len(vocabulary) + 2
  # The categories' frequency and fraud-rate features (input_pipeline/category_stats.py) come
  # last, and are numeric features like the others.
  stat_names = pre.category_stats.names() if pre.stats else []
  numeric = tuple(range(n_numeric)) + tuple(range(offset, offset + len(stat_names)))
  return FeatureLayout(num_features=offset + len(stat_names), numeric=numeric,
                       numeric_names=tuple(pre.numeric_features) + tuple(stat_names),
                       missing_flags=tuple(range(n_numeric, n_numeric + n_missing)),
                       categorical=tuple(blocks), train_rows=train_x, seed=seed)


def numeric_only(num_features: int) -> FeatureLayout:
  """The layout of F numeric features and nothing else (no quantiles)."""
  return FeatureLayout(num_features=num_features, numeric=tuple(range(num_features)),
                       numeric_names=tuple(f"x{i}" for i in range(num_features)))
