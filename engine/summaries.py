"""The one place that writes TensorBoard summaries."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf


class Summaries:
  """Writers for `<model_dir>/logs/{train,validation,test}` (and `logs` itself, for hparams).

  A no-op where `enabled` is False.
  """

  def __init__(self, model_dir: str, enabled: bool = True):
    self.enabled = enabled
    self._writers = {}
    self._root = os.path.join(model_dir, "logs")

  def writer(self, name: str):
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(os.path.join(self._root, name))
    return self._writers[name]

  def scalars(self, name: str, values: dict[str, float], step: int) -> None:
    """Writes each value as a scalar summary under its tag, at `step`, all in one event.

    The Summary protobuf is built on the host (TensorBoard's `scalar_pb`: the same float32
    tensor and scalar-plugin metadata `tf.summary.scalar` writes) and written with one op.
    Eagerly, one `tf.summary.scalar` op per value cost ~5 ms per call, twice per epoch: a
    third as long as an oversampling epoch's 20 training steps.
    """
    if not self.enabled:
      return
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary
    pb = summary_pb2.Summary()
    for tag, value in values.items():
      pb.value.extend(scalar_summary.scalar_pb(tag, float(value)).value)
    with self.writer(name).as_default(step=step):
      tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)

  def text(self, name: str, tag: str, value: str, step: int = 0) -> None:
    if not self.enabled:
      return
    with self.writer(name).as_default(step=step):
      tf.summary.text(tag, value)

  def flush(self) -> None:
    for w in self._writers.values():
      w.flush()

  def close(self) -> None:
    for w in self._writers.values():
      w.close()

  def pr_curve(self, name: str, tag: str, labels: np.ndarray, probabilities: np.ndarray,
               step: int, num_thresholds: int = 201) -> None:
    """A precision-recall curve for TensorBoard's PR Curves dashboard.

    The plugin's `pb` builds the curve on the host from all predictions; the summary protobuf
    goes into the same event file as the scalars through `write_raw_pb`.
    """
    if not self.enabled:
      return
    from tensorboard.plugins.pr_curve import summary as pr_summary
    pb = pr_summary.pb(tag, labels=np.asarray(labels).astype(bool),
                       predictions=np.asarray(probabilities, np.float32),
                       num_thresholds=num_thresholds)
    with self.writer(name).as_default(step=step):
      tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)

  def image(self, name: str, tag: str, rgb: np.ndarray, step: int) -> None:
    """uint8 RGB pixels [height, width, 3] (e.g. from engine/plots.py) for the Images
    dashboard."""
    if not self.enabled:
      return
    with self.writer(name).as_default(step=step):
      tf.summary.image(tag, np.asarray(rgb, np.uint8)[np.newaxis])

  def hparams(self, config, metrics: dict[str, list[str]]) -> None:
    """The run's hyperparameters, for the HParams dashboard, at `<model_dir>/logs`.

    The run directory `logs` is the HParams session; its metrics are the scalars of its
    sub-runs, named by group ("test", "validation"), so runs of every strategy under one
    --logdir line up in one table.

    Args:
      config: the run's Config.
      metrics: {group: [scalar tags]} to list as the session's metrics.
    """
    if not self.enabled:
      return
    from tensorboard.plugins.hparams import api as hp
    from engine.config import STRATEGIES
    values = {
        hp.HParam("strategy", hp.Discrete(list(STRATEGIES))): config.strategy,
        hp.HParam("seed"): config.seed,
        hp.HParam("learning_rate"): config.learning_rate,
        hp.HParam("batch_size"): config.batch_size,
        hp.HParam("hidden_units"): ",".join(map(str, config.hidden_units)),
        hp.HParam("dropout"): config.dropout,
        hp.HParam("target_recall"): config.target_recall,
    }
    hp_metrics = [hp.Metric(tag, group=group, display_name=f"{group}/{tag}")
                  for group, tags in metrics.items() for tag in tags]
    with self.writer("").as_default(step=0):
      hp.hparams_config(hparams=list(values), metrics=hp_metrics)
      hp.hparams(values, trial_id=config.strategy)

  def evaluation(self, results: dict, scored: dict[str, tuple[np.ndarray, np.ndarray]],
                 step: int) -> None:
    """PR curves of validation and test, and test images, of the model in `results`.

    Args:
      results: results.json's content so far (its "threshold" marks the operating point).
      scored: {"validation": (labels, probabilities), "test": (...)} of the best weights.
      step: the best epoch, so these line up with the scalars of the same weights.
    """
    if not self.enabled:
      return
    from engine import plots
    for name in ("validation", "test"):
      self.pr_curve(name, "pr_curve", *scored[name], step)
    y, p = scored["test"]
    threshold = results["threshold"]["value"]
    self.image("test", "confusion_matrix_at_0.5", plots.confusion_matrix(y, p, 0.5, "test"), step)
    self.image("test", "confusion_matrix_at_threshold",
               plots.confusion_matrix(y, p, threshold, "test"), step)
    self.image("test", "roc_curve", plots.roc_curve(y, p, "test ROC"), step)
    self.image("test", "pr_curve_image", plots.pr_curve(y, p, "test PR", threshold), step)
    self.image("test", "reliability", plots.reliability(y, p, "test calibration"), step)
