"""The outer loop: `train_and_evaluate(config, model_dir)`, the library's entry point.

It reads as four steps: `preflight` (every check, before anything is written), `fit` (the
epoch loop: train, evaluate, summarise, early-stop, checkpoint), then engine/report.py's
`final_report` (the exported weights' exact metrics and the decision threshold) and `publish`
(summaries, export and results.json, on the chief only). The compiled step lives in engine/step.py, the runner of one
model in engine/trainer.py, the training state in engine/state.py, the data behind
input_pipeline/data.py's interface.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from engine import (calibration, checkpointing, distribute, export, preemption, progress, report,
                    run_dir, strategies)
from engine import state as train_state
from engine.config import DEFAULT_STEPS_PER_EPOCH, Config, ConfigError
from engine.summaries import Summaries
from engine.trainer import Trainer
from engine.write_guard import guard
from input_pipeline.data import Data
from input_pipeline.loading import open_data


class NumericalError(RuntimeError):
  """The loss became NaN or Inf."""


def steps_per_epoch(config: Config) -> int:
  """Training steps between two evaluations: `--steps_per_epoch`, else DEFAULT_STEPS_PER_EPOCH."""
  return config.steps_per_epoch or DEFAULT_STEPS_PER_EPOCH


def configure_tensorflow(config: Config) -> None:
  """Process-wide TensorFlow settings; must run before the first op."""
  distribute.split_cpu(config.logical_cpus)
  distribute.set_intra_op_threads(config)
  if config.deterministic:
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass
class Run:
  """One run in progress: what the steps after preflight share."""

  config: Config
  model_dir: str
  data: Data
  strategy: tf.distribute.Strategy
  distribution: str
  state: train_state.TrainState
  trainer: Trainer
  ckpts: checkpointing.Checkpoints
  summaries: Summaries
  chief: bool
  epoch_steps: int
  # Fitted on the validation scores at each validation pass (`validate`), kept for the test
  # split and the export: after the final report, the best weights' fit.
  calibration: calibration.Calibration = calibration.IDENTITY


def train_and_evaluate(config: Config, model_dir: str, *, initial_weights: str | None = None,
                       load_data_fn=None, data: Data | None = None) -> dict:
  """Trains, early-stops, checkpoints and evaluates one model; returns results.json's content.

  Running again on the same model_dir resumes from the newest readable checkpoint. SIGTERM
  saves a checkpoint at the current step and returns early with `{"preempted": True, ...}`.
  In a multi-worker run only the chief writes to model_dir (see distribute.worker_directory).

  Args:
    config: the run's config.
    model_dir: where the run lives.
    initial_weights: a weights checkpoint (engine/compare.py) to start from instead of a fresh
      initialisation, so runs of different strategies start from the same weights; the output
      bias is still this strategy's. Written by the first run that finds none.
    load_data_fn: optional; returns the in-memory (splits, description) instead of
      `input_pipeline.loading.load_splits(config)` (main.py passes a background load's result).
    data: optional; the data, already opened (engine/compare.py opens it once for three runs).

  Raises:
    ConfigError: an invalid config, or a model_dir that cannot be used.
    DataError: input data that cannot be used.
    NumericalError: the training loss became NaN or Inf.
  """
  configure_tensorflow(config)
  strategy, distribution = distribute.make_strategy(config)
  distribute.log_strategy(strategy, distribution)
  with distribute.worker_directory(strategy, model_dir) as work_dir:
    opened = data
    data, resuming = preflight(config, work_dir, strategy,
                               lambda: opened or open_data(config, load_data_fn))
    # Everything above only reads. From here on the model directory is written, by one run only.
    with run_dir.RunLock(work_dir), preemption.StopRequest() as stop:
      if config.fresh:
        run_dir.clear(work_dir)
      run = start(config, work_dir, data=data, strategy=strategy, distribution=distribution,
                  resuming=resuming, initial_weights=initial_weights)
      stopped = fit(run, stop)
      if stopped:
        return stopped
      if run.ckpts.saved_step != run.state.step:
        _save(run)
      results, scored = report.final_report(run)
      report.publish(run, results, scored)
  return results


def preflight(config: Config, model_dir: str, strategy, get_data) -> tuple[Data, bool]:
  """Every check that can be made before the model directory is written.

  Args:
    get_data: returns the run's `Data`; called once the cheap checks have passed.

  Returns:
    (the data, whether model_dir holds a run to resume).
  """
  num_replicas = strategy.num_replicas_in_sync
  if config.batch_size % num_replicas:
    raise ConfigError(f"invalid --batch_size={config.batch_size}: not divisible by the "
                      f"{num_replicas} replicas")
  run_dir.check_writable(model_dir)
  data = get_data()
  export.input_names(data.preprocessor.raw_columns)  # The export's signature, before training.
  if strategies.get(config.strategy).uses_share:
    try:
      strategies.positive_share(data.class_counts(), config.positive_fraction)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  resuming = run_dir.check_compatible(model_dir, config, data.preprocessor.feature_names)
  return data, resuming


def start(config: Config, model_dir: str, *, data: Data, strategy, distribution: str,
          resuming: bool, initial_weights: str | None) -> Run:
  """Writes the run's config and preprocessing, and builds (or restores) its state."""
  chief = distribute.is_chief(strategy)
  with guard("the run's config", model_dir):
    run_dir.write_atomic(os.path.join(model_dir, run_dir.CONFIG_FILE), config.to_json() + "\n")
    run_dir.write_data_identity(model_dir, config)
    data.preprocessor.save(os.path.join(model_dir, run_dir.PREPROCESSING_FILE))
  counts = data.class_counts()
  epoch_steps = steps_per_epoch(config)
  imbalance = strategies.get(config.strategy)
  share = strategies.positive_share(  # Checked in preflight.
      counts, config.positive_fraction if imbalance.uses_share else None)
  # config.json keeps what was asked for (a default follows the table); the run uses the share.
  config = config.replace(positive_fraction=share)
  bias = imbalance.initial_bias(counts, share)
  weights = imbalance.class_weights(counts, share)
  logging.info("Strategy %s: positive share %.4g, class weights %s, bias %.4f, %d steps/epoch",
               config.strategy, share, [round(float(w), 4) for w in weights],
               bias, epoch_steps)
  state = train_state.create(config, layout=data.layout(config.seed), output_bias=bias,
                             strategy=strategy)
  ckpts = checkpointing.Checkpoints(
      model_dir, model=state.evaluated_model, best_model=state.best_model,
      keep=config.checkpoints_to_keep,
      interval_seconds=config.checkpoint_interval_seconds, state=state.checkpointed())
  summaries = Summaries(model_dir, enabled=chief)
  with guard("the initial weights and summaries", model_dir):
    restored = train_state.restore_or_initialize(
        state, ckpts, config=config, resuming=resuming, initial_weights=initial_weights,
        output_bias=bias, chief=chief)
    if not restored:
      summaries.text("train", "config", "```\n" + config.to_json() + "\n```")
  return Run(config=config, model_dir=model_dir, data=data, strategy=strategy,
             distribution=distribution, state=state, trainer=Trainer(config, data, state, strategy),
             ckpts=ckpts, summaries=summaries, chief=chief, epoch_steps=epoch_steps)


def fit(run: Run, stop: preemption.StopRequest) -> dict | None:
  """The epoch loop, until the last epoch or early stopping.

  Returns:
    None when training is over; `{"preempted": True, ...}` if a signal stopped it.
  """
  config, state = run.config, run.state
  start_epoch, t0 = int(state.epoch.numpy()), time.perf_counter()
  logging.info("Early stopping on %s", progress.monitor_description(config))

  def stop_agreed() -> bool:
    # Every worker of a multi-worker run must stop at the same step: they agree on it.
    return distribute.any_worker(run.strategy, stop.requested)

  while int(state.epoch.numpy()) < config.epochs and not state.early_stopping.should_stop:
    epoch, first_step = int(state.epoch.numpy()) + 1, state.step
    steps = max(run.epoch_steps - (first_step - int(state.epoch_start_step.numpy())), 0)
    train, seconds = run.trainer.train(steps, stop=stop_agreed, epoch=epoch)
    state.train_seconds.assign_add(seconds)
    if not math.isfinite(train["loss"]):
      raise NumericalError(
          f"training loss is {train['loss']} in epoch {epoch} (steps {first_step + 1}-"
          f"{state.step}); stopped without saving it; the last checkpoint (step "
          f"{run.ckpts.saved_step}) and its best weights are kept in {run.model_dir}")
    if stop_agreed():
      return _preempted(run, stop, epoch)
    validation = report.validate(run)
    train["examples_per_second"] = steps * config.batch_size * config.ensemble / seconds
    improved = end_epoch(run, epoch, train, validation.metrics, validation.member_areas)
    # Counted from this process's start: a resumed run's earlier epochs took unknown time.
    eta = progress.eta_seconds(epochs_done=epoch - start_epoch,
                               epochs_total=config.epochs - start_epoch,
                               seconds_so_far=time.perf_counter() - t0)
    logging.info("%s", progress.epoch_line(
        epoch=epoch, train=train, validation=validation.metrics, eta_seconds=eta,
        extra=config.monitor_metric, status=progress.epoch_status(
            improved=improved, wait=int(state.early_stopping.wait.numpy()),
            members_improved=state.member_best.best_epoch.numpy() == epoch)))
  return None


def end_epoch(run: Run, epoch: int, train: dict, validation: dict,
              members: list[dict] | None = None) -> bool:
  """Summaries, early stopping, best weights and the checkpoint if due; True if improved.

  Args:
    members: each member's exact validation {"auc", "prc"} (an ensemble keeps each member's
      best weights by its own PR-AUC; a single model's best is the monitor's).
  """
  state = run.state
  improved = state.early_stopping.update(validation[run.config.monitor_metric], epoch)
  scalars = dict(validation)
  if report.independent_members(state.model) and members:
    better = state.member_best.update([m["prc"] for m in members], epoch)
    scalars.update({f"member_{k}/{name}": v for k, m in enumerate(members) for name, v in m.items()})
  else:  # One member: its best is the monitor's best.
    better = state.member_best.mark(np.array([improved]), epoch)
  state.epoch.assign(epoch)
  state.epoch_start_step.assign(state.step)
  if better.any():
    run.ckpts.keep_best(state.step, members=better)
  with guard("the epoch's summaries", os.path.join(run.model_dir, "logs")):
    run.summaries.scalars("train", train, epoch)
    run.summaries.scalars("validation", scalars, epoch)
    run.summaries.flush()
  # Every worker must take part in a save: they agree on whether one is due.
  if distribute.any_worker(run.strategy, run.ckpts.due()):
    _save(run)
  return improved


def _save(run: Run) -> str:
  with guard("a checkpoint", os.path.join(run.model_dir, checkpointing.CHECKPOINTS)):
    return run.ckpts.save(run.state.step)


def _preempted(run: Run, stop: preemption.StopRequest, epoch: int) -> dict:
  step = run.state.step
  # No step since the last checkpoint: it already holds this state; rewriting it in place
  # would only risk it.
  path = _save(run) if step != run.ckpts.saved_step else run.ckpts.latest_path
  run.summaries.close()
  logging.info("Stopped by %s at step %d (epoch %d, %d of %d steps); saved %s. Run the same "
               "command again to resume.", stop.signal_name or "a signal to another worker", step,
               epoch, step - int(run.state.epoch_start_step.numpy()), run.epoch_steps, path)
  return {"preempted": True, "step": step, "checkpoint": path}
