"""One interface for the data a run trains on, whether it is held in memory or streamed from disk.

The engine sees only `Data`: the fitted preprocessing, the split counts, an infinite training
stream per input pipeline, and the (labels, logits) of a whole split for evaluation. Two
implementations: `InMemoryData` (splits of a CSV read into memory, below) and
`prepared.PreparedData` (TFRecord shards written by `--mode=prepare`, streamed).
`loading.open_data(config)` picks the one the config names: it lives there, not here, so this
interface imports none of its implementations.
"""

from __future__ import annotations

import abc
from typing import Callable

import numpy as np

# The splits by name, in the order of their codes (0 train, 1 validation, 2 test).
SPLIT_NAMES = ("train", "validation", "test")

# scorer(features [n, F]) -> logits [members, n] float32: the model, one batch at a time.
LogitsFn = Callable[[object], np.ndarray]


class Data(abc.ABC):
  """The data of a run: what the engine needs of it, and nothing about where it lives."""

  preprocessor: object   # input_pipeline.preprocessing.Preprocessor
  num_features: int
  description: str       # one line: where the rows come from

  @abc.abstractmethod
  def counts(self) -> dict[str, dict[str, int]]:
    """{split: {"rows": n, "positives": k}} for train, validation and test."""

  def class_counts(self) -> np.ndarray:
    """[negatives, positives] of the training split: all the class statistics need."""
    c = self.counts()["train"]
    return np.array([c["rows"] - c["positives"], c["positives"]], np.int64)

  @abc.abstractmethod
  def train_dataset(self, spec):
    """The infinite training stream of (features [batch, F] float32, labels [batch] int32)
    that the `datasets.StreamSpec` describes."""

  @abc.abstractmethod
  def training_rows(self, limit: int) -> np.ndarray:
    """Up to `limit` training rows [n, F] as the model sees them (for the layout's quantiles)."""

  def layout(self, seed: int = 0):
    """The `layout.FeatureLayout` of the features, with the training split's quantiles."""
    from input_pipeline import layout
    # The rows are read only if a model asks for the quantiles (a prepared directory's are on
    # disk: most families never need them).
    return layout.from_preprocessor(
        self.preprocessor, lambda: self.training_rows(layout.QUANTILE_ROWS), seed=seed)

  @abc.abstractmethod
  def predictions(self, split: str, scorer: LogitsFn) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [n], logits float32 [members, n]) of every row of `split`, scored by
    `scorer`."""


class InMemoryData(Data):
  """Splits held in memory as arrays (`preprocessing.Splits`)."""

  def __init__(self, splits, description: str = "in memory"):
    self.splits = splits
    self.preprocessor = splits.preprocessor
    self.num_features = splits.num_features
    self.description = description
    self._arrays = {"train": (splits.x_train, splits.y_train),
                    "validation": (splits.x_val, splits.y_val),
                    "test": (splits.x_test, splits.y_test)}
    self._tensors = {}

  def counts(self) -> dict[str, dict[str, int]]:
    return self.splits.counts()

  def train_dataset(self, spec):
    from input_pipeline import datasets
    x, y = self._arrays["train"]
    return datasets.train_dataset(x, y, spec)

  def training_rows(self, limit):
    return self._arrays["train"][0]  # The layout samples `limit` of them itself.

  def predictions(self, split, scorer):
    import tensorflow as tf
    x, y = self._arrays[split]
    # Made once: validation is scored every epoch, and converting its rows each time is waste.
    if split not in self._tensors:
      self._tensors[split] = tf.constant(x, tf.float32)
    return np.asarray(y, np.int64), scorer(self._tensors[split])

