"""The one place that writes TensorBoard summaries.

Runs under `<model_dir>/logs`: `train` and `validation` per epoch; `test` (the best weights' test
metrics) and `validation_best` (the best epoch's validation metrics, again, with `best_epoch`),
both at the best epoch's step (an ensemble's with each member's own best epoch as
`member_k/best_epoch`); and `logs` itself, the HParams session. A tag means what it means
in results.json: `auc` and `prc` are exact, `auc_streaming` and `prc_streaming` Keras' estimates;
`recall_at_fpr_0.01` is results.json's `recall_at_fpr` {"0.01": ...}.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from engine import evaluation


BEST_VALIDATION = "validation_best"
# The HParams table's columns: {run: [tags]}. The validation figures come from the best epoch
# (the HParams plugin reads a tag's last value, which in `validation` is the last epoch's).
HPARAMS_METRICS = {BEST_VALIDATION: ["best_epoch", "prc", "auc", "recall_at_fpr_0.01", "loss"],
                   "test": ["prc", "auc", "recall_at_fpr_0.01", "precision", "recall", "loss"]}


class Summaries:
  """Writers for `<model_dir>/logs/{train,validation,test,validation_best}` (and `logs` itself,
  for hparams).

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

  def scalars(self, name: str, values: dict, step: int) -> None:
    """Writes each value as a scalar summary under its tag, at `step`, all in one event.

    A nested dict is written under its flat names (`evaluation.flat_metrics`): results.json's
    {"recall_at_fpr": {"0.01": r}} is the tag `recall_at_fpr_0.01`.

    The Summary protobuf is built on the host (TensorBoard's `scalar_pb`: the same float32
    tensor and scalar-plugin metadata `tf.summary.scalar` writes) and written with one op:
    eagerly, one `tf.summary.scalar` op per value, twice per epoch, cost a sizeable share of a
    short epoch's training time.
    """
    if not self.enabled:
      return
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary
    pb = summary_pb2.Summary()
    for tag, value in evaluation.flat_metrics(values).items():
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
               step: int, max_points: int = 256) -> None:
    """A precision-recall curve for TensorBoard's PR Curves dashboard, from the exact scores.

    The plugin's own `pb` counts at evenly spaced thresholds in [0, 1]; an oversampled model
    scores most frauds near 1, so its curve showed only recall 0.8-1.0. The points here are
    taken where the data is (`pr_points`). The plugin labels point i of n with the threshold
    i/(n-1), not the score: the description says so.
    """
    if not self.enabled:
      return
    from tensorboard.plugins.pr_curve import summary as pr_summary
    tp, fp, tn, fn = pr_points(labels, probabilities, max_points)
    pb = pr_summary.raw_data_pb(
        tag, true_positive_counts=tp, false_positive_counts=fp, true_negative_counts=tn,
        false_negative_counts=fn, precision=tp / np.maximum(tp + fp, 1),
        recall=tp / np.maximum(tp + fn, 1), num_thresholds=len(tp),
        description="Exact precision and recall at score quantiles and at every fraud caught "
                    "(up to the last); the threshold axis is the point's index, not its score.")
    with self.writer(name).as_default(step=step):
      tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)

  def image(self, name: str, tag: str, rgb: np.ndarray, step: int) -> None:
    """uint8 RGB pixels [height, width, 3] (e.g. from engine/plots.py) for the Images
    dashboard."""
    if not self.enabled:
      return
    with self.writer(name).as_default(step=step):
      tf.summary.image(tag, np.asarray(rgb, np.uint8)[np.newaxis])

  def best_epoch(self, validation: dict[str, float], epoch: int,
                 member_epochs: list[int] | None = None) -> None:
    """The reported weights' validation metrics and the best epoch, in the `validation_best`
    run: what the HParams table shows beside the test ones.

    Args:
      validation: results.json's validation metrics (a single model's are what `validation`
        holds at the best epoch; an ensemble's are those of its members' best weights together).
      epoch: the best epoch of the monitored metric, the step they are written at.
      member_epochs: an ensemble's: each member's own best epoch, as `member_k/best_epoch`.
    """
    extra = {f"member_{k}/best_epoch": e for k, e in enumerate(member_epochs or ())}
    self.scalars(BEST_VALIDATION, {**validation, "best_epoch": epoch, **extra}, epoch)

  def hparams(self, config) -> None:
    """The run's hyperparameters, for the HParams dashboard, at `<model_dir>/logs`.

    The run directory `logs` is the HParams session; its metrics are the scalars of its
    sub-runs (HPARAMS_METRICS), so runs of every strategy under one --logdir line up in one
    table: the best epoch, its validation metrics and the same weights' test metrics.

    Args:
      config: the run's Config.
    """
    if not self.enabled:
      return
    from tensorboard.plugins.hparams import api as hp
    from engine.config import hparam_fields
    values = {}
    for f in hparam_fields():
      value = getattr(config, f.name) if f.name != "model" else config.model.name
      if isinstance(value, tuple):
        value = ",".join(map(str, value))
      values[hp.HParam(f.name, hp.Discrete(list(f.choices)) if f.choices else None)] = value
    hp_metrics = [hp.Metric(tag, group=group, display_name=f"{group}/{tag}")
                  for group, tags in HPARAMS_METRICS.items() for tag in tags]
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


def _spread(indices: np.ndarray, n: int) -> np.ndarray:
  """At most `n` of `indices`, evenly spaced, the first and the last included."""
  if len(indices) <= n:
    return indices
  return indices[np.linspace(0, len(indices) - 1, n).round().astype(int)]


def pr_points(labels: np.ndarray, probabilities: np.ndarray, max_points: int = 256,
              ) -> tuple[np.ndarray, ...]:
  """Confusion counts (tp, fp, tn, fn) at thresholds where the scores are, increasing.

  Candidates are the distinct scores (a threshold at a score flags every row scored at least
  that). Half the points go to the scores at which a fraud is caught, so recall is resolved
  from the first fraud to the last however the scores crowd; half to evenly spaced ranks, so
  the false positives are resolved too.
  """
  y = np.asarray(labels).astype(bool)
  p = np.asarray(probabilities, np.float64)
  order = np.argsort(-p, kind="stable")
  ranked_p, ranked_y = p[order], y[order]
  last = np.flatnonzero(np.r_[ranked_p[1:] != ranked_p[:-1], True])  # End of each tie group.
  tp_all = np.cumsum(ranked_y)[last]
  catches = np.flatnonzero(np.diff(np.r_[0, tp_all]))
  pick = np.unique(np.r_[_spread(catches, max_points // 2),
                         _spread(np.arange(len(last)), max_points - max_points // 2)])
  tp = tp_all[pick][::-1].astype(np.float64)  # Increasing threshold, as the plugin reads them.
  fp = (last[pick] + 1)[::-1] - tp
  positives = float(y.sum())
  return tp, fp, len(y) - positives - fp, positives - tp
