"""The streaming metrics, as Keras metric objects, and their `{name: float}` results."""

from __future__ import annotations

import keras
import tensorflow as tf

METRIC_NAMES = ("loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "auc", "prc")


class Metrics:
  """One set of streaming metrics (train or validation). Create under the strategy's scope.

  `update` runs inside the replica function; `result` and `reset` outside it.
  """

  def __init__(self):
    self.loss = keras.metrics.Mean(name="loss")
    self.classification = {
        "tp": keras.metrics.TruePositives(name="tp"),
        "fp": keras.metrics.FalsePositives(name="fp"),
        "tn": keras.metrics.TrueNegatives(name="tn"),
        "fn": keras.metrics.FalseNegatives(name="fn"),
        "accuracy": keras.metrics.BinaryAccuracy(name="accuracy"),
        "precision": keras.metrics.Precision(name="precision"),
        "recall": keras.metrics.Recall(name="recall"),
        # 200 evenly spaced thresholds (Keras' default): an approximation of the exact curves
        # that the final evaluation computes over all test predictions.
        "auc": keras.metrics.AUC(name="auc"),
        "prc": keras.metrics.AUC(curve="PR", name="prc"),
    }

  def update(self, labels, probabilities, per_example_loss, mask=None):
    self.loss.update_state(per_example_loss, sample_weight=mask)
    for metric in self.classification.values():
      metric.update_state(labels, probabilities, sample_weight=mask)

  def result(self) -> dict[str, float]:
    out = {"loss": float(self.loss.result())}
    out.update({k: float(m.result()) for k, m in self.classification.items()})
    return out

  def reset(self) -> None:
    self.loss.reset_state()
    for metric in self.classification.values():
      metric.reset_state()
