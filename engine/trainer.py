"""The runner of one model: `train(num_steps)`, `score(split)` and `evaluate(scores,
calibration)`, in the spirit of orbit.

The `Trainer` owns the compiled training loop over the distributed input stream, and the
evaluation of a split: one scoring pass (a host copy of the weights, one compiled function)
whose scores feed both the streaming Keras metrics and the exact ones. Evaluating fits
nothing: the calibration is an argument, fitted and kept by the outer loop (engine/loop.py),
which decides when to train, evaluate, checkpoint and stop.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from engine import distribute, evaluation, losses, models, progress, strategies
from engine.calibration import CROSS_FITTED, Calibration
from engine.metrics import Metrics
from engine.step import make_train_loop
from input_pipeline.datasets import StreamSpec


def train_iterator(data, strategy: tf.distribute.Strategy, *, config, start_step: int = 0,
                   members: int = 1):
  """The distributed iterator over `data`'s training stream, resumed at `start_step`.

  Each input pipeline makes its own stream (its share of the rows, its own draws) for its
  replicas' batch, and skips what the replicas consumed before `start_step`. `members`: how
  many members' batches an element holds (a model whose members train on rows of their own).
  """
  num_replicas = strategy.num_replicas_in_sync
  imbalance = strategies.get(config.strategy)
  share = imbalance.stream_share(strategies.positive_share(
      data.class_counts(), config.positive_fraction if imbalance.uses_share else None))

  # One element holds every member's batch: members train on their own rows, drawn from one
  # stream (a pure function of the seed, like a single model's; input_pipeline/datasets.py).
  global_batch = config.batch_size * members

  def train_fn(ctx: tf.distribute.InputContext):
    return data.train_dataset(StreamSpec(
        batch_size=ctx.get_per_replica_batch_size(global_batch), chunk=config.oversample_chunk,
        seed=config.seed, positive_share=share, members=members,
        pipeline_id=ctx.input_pipeline_id, num_pipelines=ctx.num_input_pipelines,
        skip=start_step * num_replicas // ctx.num_input_pipelines))

  return iter(strategy.distribute_datasets_from_function(train_fn))


@dataclasses.dataclass(frozen=True)
class Scores:
  """One scoring pass of a split: its labels and each member's prior-corrected probabilities
  [members, rows], before any calibration."""

  labels: np.ndarray
  members: np.ndarray

  @property
  def probabilities(self) -> np.ndarray:
    """The ensemble's probability: the members' mean (one member: its own)."""
    return self.members.mean(axis=0)


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What `Trainer.evaluate` returns.

  Attributes:
    metrics: {name: value}, as results.json and TensorBoard name them.
    labels: the split's labels.
    probabilities: the calibrated probabilities the metrics are of.
    member_areas: each member's exact {"auc", "prc"} on its own prior-corrected scores.
    calibration: the calibration applied.
  """

  metrics: dict
  labels: np.ndarray
  probabilities: np.ndarray
  member_areas: list
  calibration: Calibration


class Trainer:
  """Trains `state.model` on `data` under `strategy`, and evaluates it on a split.

  Args:
    config: the run's config.
    data: an `input_pipeline.data.Data`.
    state: the `engine.state.TrainState`; training resumes at its step.
    strategy: the tf.distribute strategy the state was created under.
  """

  def __init__(self, config, data, state, strategy: tf.distribute.Strategy):
    self.config, self.data, self.state = config, data, state
    counts = data.class_counts()
    imbalance = strategies.get(config.strategy)
    share = strategies.positive_share(
        counts, config.positive_fraction if imbalance.uses_share else None)
    self.class_weights = imbalance.class_weights(counts, share)
    # Scores are reported and exported on the real-world prior (engine/strategies.py).
    self.logit_shift = imbalance.logit_shift(counts, share)
    with strategy.scope():
      self.train_metrics = Metrics()
    model = state.model
    self._iterator = train_iterator(data, strategy, config=config, start_step=state.step,
                                    members=model.members if model.own_rows else 1)
    self.jit_compile = distribute.resolve_jit_compile(config)
    self._loop = make_train_loop(
        model=model, optimizer=state.optimizer, strategy=strategy,
        metrics=self.train_metrics, class_weights=self.class_weights,
        global_batch_size=config.batch_size, seed=config.seed, jit_compile=self.jit_compile,
        average=state.average_model, ema_momentum=config.ema_momentum,
        per_example=losses.per_example_fn(config.loss))
    # Evaluation runs on a single-device copy of the weights, whatever the strategy.
    self.host = models.build(config, state.layout, output_bias=0.0)
    self._scorer = evaluation.Scorer(self.host, jit_compile=self.jit_compile)
    self.eval_metrics = Metrics()

  def train(self, num_steps: int, *, stop=None, epoch: int = 0) -> tuple[dict[str, float], float]:
    """Runs `num_steps` steps, `steps_per_loop` per compiled call.

    Args:
      num_steps: training steps to run.
      stop: optional callable; when it returns True, no further call is started.
      epoch: the epoch's number, for the progress bar.

    Returns:
      (the streaming training metrics of these steps, seconds they took).
    """
    bar = progress.EpochBar(epoch=epoch, total_steps=num_steps,
                            steps_per_call=self.config.steps_per_loop)
    return run_steps(self._loop, self._iterator, self.train_metrics, steps=num_steps,
                     steps_per_loop=self.config.steps_per_loop, stop_requested=stop, bar=bar)

  def score(self, split: str) -> Scores:
    """Scores `split` once with the current weights (the moving average of the weights with
    `--ema_momentum`): each member's prior-corrected probabilities, before any calibration."""
    self.host.set_weights(self.state.evaluated_model.get_weights())
    labels, logits = self.data.predictions(split, self._scorer)
    return Scores(labels=labels,
                  members=evaluation.member_probabilities(logits, self.logit_shift))

  def evaluate(self, scores: Scores, calibration: Calibration, *,
               out_of_fold: np.ndarray | None = None) -> Evaluation:
    """The metrics of `scores` (from `score`) under `calibration`; fits and keeps nothing.

    Every epoch and the final report call this, so a name means the same number in both: the
    exact metrics of engine/evaluation.py (`loss`, `brier`, the counts at 0.5, and over all
    predictions `auc`, `prc` and the nested `recall_at_fpr`), plus the 200-threshold Keras
    estimates as `auc_streaming` and `prc_streaming`.

    Args:
      scores: a split's scores.
      calibration: applied to the members' mean probability.
      out_of_fold: optional; the same rows calibrated by fits that did not see them
        (`calibration.cross_fitted`). When given, the metrics a fit flatters
        (`calibration.CROSS_FITTED`) are computed on these instead.
    """
    labels = scores.labels
    probabilities = calibration(scores.probabilities)
    out = evaluation.exact_metrics(labels, probabilities)
    if out_of_fold is not None:
      held_out = evaluation.exact_metrics(labels, out_of_fold)
      out.update({name: held_out[name] for name in CROSS_FITTED})
    streaming = self.eval_metrics.evaluate(labels, probabilities)
    out.update(auc_streaming=streaming["auc_streaming"], prc_streaming=streaming["prc_streaming"])
    if len(scores.members) == 1:  # A single model is its own only member: its areas are known.
      areas = [{"auc": out["auc"], "prc": out["prc"]}]
    else:
      areas = [dict(zip(("auc", "prc"), evaluation.roc_auc_and_average_precision(labels, m)))
               for m in scores.members]
    return Evaluation(metrics=out, labels=labels, probabilities=probabilities,
                      member_areas=areas, calibration=calibration)


def run_steps(train_loop, iterator, metrics: Metrics, *, steps: int, steps_per_loop: int,
              stop_requested=None, bar: progress.EpochBar | None = None,
              ) -> tuple[dict[str, float], float]:
  """Runs `steps` training steps of `train_loop`, `steps_per_loop` per compiled call.

  Returns:
    (the metrics of these steps, seconds they took, including the wait for the last step).
  """
  metrics.reset()
  t0 = time.perf_counter()
  remaining = steps
  while remaining > 0 and not (stop_requested and stop_requested()):
    n = min(remaining, steps_per_loop)
    train_loop(iterator, tf.constant(n, tf.int32))
    remaining -= n
    if bar:
      bar.update(n)
  if bar:
    bar.close()
  result = metrics.result()  # Reading a result waits for the steps to finish.
  return result, time.perf_counter() - t0

