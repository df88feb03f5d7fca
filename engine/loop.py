"""The outer loop: `train_and_evaluate(config, model_dir)`, the library's entry point.

It reads as four steps: `preflight` (every check, before anything is written), `fit` (the
epoch loop: train, evaluate, summarise, early-stop, checkpoint), `final_report` (the best
weights' exact metrics and the decision threshold) and `publish` (summaries, export and
results.json, on the chief only). The compiled step lives in engine/step.py, the runner of one
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

from engine import (calibration, checkpointing, distribute, evaluation, export, preemption,
                    progress, run_dir, strategies)
from engine import state as train_state
from engine import threshold as thresholds
from engine.config import DEFAULT_STEPS_PER_EPOCH, Config, ConfigError
from engine.summaries import Summaries
from engine.trainer import Evaluation, Trainer
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
      results, scored = final_report(run)
      publish(run, results, scored)
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
    validation = validate(run)
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


def validate(run: Run) -> Evaluation:
  """Scores the validation split, fits the calibration on those scores and keeps it in
  `run.calibration`, and evaluates them with it; with `--calibration=platt` the metrics a fit
  flatters are cross-fitted (engine/calibration.py)."""
  scores = run.trainer.score("validation")
  run.calibration = calibration.fit_method(run.config.calibration, scores.labels,
                                           scores.probabilities)
  out_of_fold = None
  if run.config.calibration == "platt":
    out_of_fold = calibration.cross_fitted(scores.labels, scores.probabilities, run.calibration)
  return run.trainer.evaluate(scores, run.calibration, out_of_fold=out_of_fold)


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
  if _independent_members(state.model) and members:
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


def _independent_members(model) -> bool:
  """An ensemble whose members share no weight: each keeps its own best weights."""
  return bool(model.own_rows) and model.members > 1


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


def final_report(run: Run) -> tuple[dict, dict]:
  """The exact metrics on validation and test of the weights that are exported, and the
  decision threshold.

  Those weights are the best epoch's, or for an ensemble each member's own best epoch's; the
  calibration is fitted again on their validation scores (`validate`), so the validation
  metrics are those of exactly what is exported.

  Returns:
    (results.json's content, {split: (labels, probabilities)}).
  """
  config, state, stopper = run.config, run.state, run.state.early_stopping
  if stopper.should_stop:
    logging.info("Early stopping after epoch %d: %s has not improved for %d epochs (best %.4f at "
                 "epoch %d)", int(state.epoch.numpy()), config.monitor, config.patience,
                 float(stopper.best_value.numpy()), int(stopper.best_epoch.numpy()))
  if run.ckpts.saved_step != state.step:
    _save(run)
  results = {"weights": checkpointing.restore_reported(run.ckpts, state=state,
                                                         monitor=config.monitor)}
  validation = validate(run)
  test = run.trainer.evaluate(run.trainer.score("test"), run.calibration)
  scored = {e: (r.labels, r.probabilities) for e, r in (("validation", validation), ("test", test))}
  results.update(validation=validation.metrics, test=test.metrics)
  if _independent_members(state.model):
    results["members"] = [{"best_epoch": epoch, "validation": v, "test": t} for epoch, v, t in
                          zip(results["weights"]["epochs"], validation.member_areas,
                              test.member_areas)]
  results["threshold"] = thresholds.choose(
      config, val_labels=scored["validation"][0], val_probabilities=scored["validation"][1],
      test_labels=scored["test"][0], test_probabilities=scored["test"][1])
  for warning in results["threshold"]["warnings"]:
    logging.warning("Threshold %.4g: %s", results["threshold"]["value"], warning)
  results.update({
      "strategy": config.strategy, "distribution": run.distribution,
      "num_replicas": run.strategy.num_replicas_in_sync, "epochs_run": int(state.epoch.numpy()),
      "best_epoch": int(stopper.best_epoch.numpy()), "steps": state.step,
      "steps_per_epoch": run.epoch_steps, "train_seconds": float(state.train_seconds.numpy()),
      "monitor": config.monitor, "best_monitor_value": float(stopper.best_value.numpy()),
      "stopped_early": bool(stopper.should_stop), "data": run.data.counts(),
      "ensemble": config.ensemble, "logit_shift": run.trainer.logit_shift,
      "positive_share": config.positive_fraction,
      "calibration": run.calibration.as_dict(),
      "validation_cross_fitted": _cross_fitted_entry(run),
  })
  if run.calibration.why:
    logging.warning("Calibration: %s; the scores are the prior-corrected ones",
                    run.calibration.why)
  return results, scored


def _cross_fitted_entry(run: Run) -> dict | None:
  """results.json's "validation_cross_fitted": which validation metrics are cross-fitted."""
  if run.config.calibration != "platt":
    return None  # Nothing fitted on validation: every metric there is out of sample.
  return {"folds": calibration.FOLDS, "metrics": list(calibration.CROSS_FITTED)}


def publish(run: Run, results: dict, scored: dict) -> None:
  """Summaries, the export and results.json (chief only), then the results table."""
  if run.chief:
    with guard("the results", run.model_dir):
      _write_results(run, results, scored)
  run.summaries.close()
  print(evaluation.results_table(results))


def _write_results(run: Run, results: dict, scored: dict) -> None:
  """The test summaries, the export (the host model holds the reported weights), results.json."""
  run.summaries.scalars("test", results["test"], results["best_epoch"])
  run.summaries.best_epoch(results["validation"], results["best_epoch"],
                           results["weights"].get("epochs"))
  run.summaries.evaluation(results, scored, results["best_epoch"])
  run.summaries.hparams(run.config)
  export_dir = export.export_model(
      run.trainer.host, run.data.preprocessor, threshold=results["threshold"],
      logit_shift=run.trainer.logit_shift, calibration=run.calibration,
      export_dir=os.path.join(run.model_dir, export.EXPORT_DIR))
  logging.info("Exported the %s weights with threshold %.6g to %s",
               results["weights"]["which"], results["threshold"]["value"], export_dir)
  run_dir.write_json(os.path.join(run.model_dir, run_dir.RESULTS_FILE), results)

