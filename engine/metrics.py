"""The streaming metrics, as Keras metric objects, and their `{name: float}` results.

Names: `auc` and `prc` always mean the exact areas over all predictions (engine/evaluation.py);
the 200-threshold Keras estimates here are `auc_streaming` and `prc_streaming`, in the training
stream's metrics as everywhere else, so one name never carries two numbers.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from engine import losses

METRIC_NAMES = ("loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall",
                "auc_streaming", "prc_streaming")


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
        # 200 evenly spaced thresholds (Keras' default): an approximation of the exact areas
        # that the evaluation computes over all predictions; it reads low where the scores
        # crowd near 0 or 1.
        "auc_streaming": keras.metrics.AUC(name="auc_streaming"),
        "prc_streaming": keras.metrics.AUC(curve="PR", name="prc_streaming"),
    }

    # Compiled once: eagerly, reading the two 200-threshold AUCs and resetting the ten metrics
    # are hundreds of small ops, each paying Python's per-op overhead. The loop reads and resets
    # two sets every epoch, and eagerly that took longer than the epoch's training steps.
    self._result = tf.function(self._result_tensors, autograph=False)
    self._reset = tf.function(self._reset_states, autograph=False)
    self._update_probabilities = tf.function(
        lambda y, p: self.update(y, p, losses.probability_loss(y, p)), autograph=False,
        reduce_retracing=True)

  def evaluate(self, labels, probabilities, batch_size: int = 65536) -> dict[str, float]:
    """The metrics of all (labels, probabilities) of a split, from a reset: for a host-side set.

    The validation loss is unweighted, as Keras reports it: class weights shape training only.
    """
    self.reset()
    for start in range(0, len(labels), batch_size):
      self._update_probabilities(
          tf.constant(labels[start:start + batch_size], tf.int32),
          tf.constant(probabilities[start:start + batch_size], tf.float32))
    return self.result()

  def update(self, labels, probabilities, per_example_loss, mask=None):
    self.loss.update_state(per_example_loss, sample_weight=mask)
    for metric in self.classification.values():
      metric.update_state(labels, probabilities, sample_weight=mask)

  def result(self) -> dict[str, float]:
    values = self._result().numpy()  # One transfer to the host for all of them.
    return {name: float(v) for name, v in zip(METRIC_NAMES, values)}

  def reset(self) -> None:
    self._reset()

  def _result_tensors(self) -> tf.Tensor:
    results = {"loss": self.loss.result()}
    results.update({k: m.result() for k, m in self.classification.items()})
    return tf.stack([tf.cast(results[name], tf.float64) for name in METRIC_NAMES])

  def _reset_states(self) -> None:
    self.loss.reset_state()
    for metric in self.classification.values():
      metric.reset_state()
