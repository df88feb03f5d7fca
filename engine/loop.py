"""The outer training loop: epochs, evaluation, summaries, checkpoints, early stopping, results.

`train_and_evaluate(config, model_dir)` is the library's entry point. The compiled inner loops
live in engine/step.py; everything that talks to the host (logging, files) lives here.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from engine import (checkpointing, distribute, evaluation, export, losses, preemption, progress,
                    run_dir)
from engine import threshold as thresholds
from engine.config import DEFAULT_OVERSAMPLE_STEPS_PER_EPOCH, Config, ConfigError
from engine.early_stopping import EarlyStopping
from engine.metrics import Metrics
from engine.model import build_model
from engine.step import make_eval_pass, make_train_loop
from engine.summaries import Summaries
from input_pipeline import datasets, loading, prepared, preprocessing
from input_pipeline.errors import DataError


class NumericalError(RuntimeError):
  """The loss became NaN or Inf."""


def steps_per_epoch(config: Config, num_train: int) -> int:
  """Training steps between two evaluations.

  `baseline` and `class_weight`: one pass over the training split in full batches. `oversample`
  draws with replacement, so an epoch is not a pass; it is a short evaluation interval instead
  (DEFAULT_OVERSAMPLE_STEPS_PER_EPOCH). `--steps_per_epoch` overrides both.
  """
  if config.steps_per_epoch:
    return config.steps_per_epoch
  if config.strategy == "oversample":
    return DEFAULT_OVERSAMPLE_STEPS_PER_EPOCH
  return max(1, num_train // config.batch_size)


def configure_tensorflow(config: Config) -> None:
  """Process-wide TensorFlow settings; must run before the first op."""
  distribute.split_cpu(config.logical_cpus)
  if config.deterministic:
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()


def load_data(config: Config, load_fn=None) -> preprocessing.Splits | prepared.PreparedData:
  """The in-memory splits, or a prepared directory's streams (`--prepared_dir`).

  Args:
    config: the run's config.
    load_fn: optional; returns the in-memory (splits, description) in place of
      `loading.load_splits(config)`, e.g. `loading.BackgroundLoad(config).result`.
  """
  if config.prepared_dir:
    data = prepared.PreparedData.open(config.prepared_dir, config.label_column)
    logging.info("Data: prepared %s (%s)", config.prepared_dir, data.metadata["source"])
    for name, c in data.counts().items():
      logging.info("  %-10s %7d rows, %4d positives", name, c["rows"], c["positives"])
    if config.batch_size > data.counts()["train"]["rows"]:
      raise DataError(f"--batch_size={config.batch_size} is larger than the training split")
    return data
  splits, description = load_fn() if load_fn else loading.load_splits(config)
  logging.info("Data: %s", description)
  for name, c in splits.counts().items():
    logging.info("  %-10s %7d rows, %4d positives (%.3f%%)", name, c["rows"], c["positives"],
                 100.0 * c["positives"] / max(1, c["rows"]))
  n_train = len(splits.y_train)
  if config.batch_size > n_train:
    raise DataError(f"--batch_size={config.batch_size} is larger than the training split "
                    f"({n_train} rows)")
  return splits


def _fmt(values: dict[str, float], keys=("loss", "auc", "prc", "precision", "recall")) -> str:
  return " ".join(f"{k} {values[k]:.4f}" for k in keys)


def create_state(config: Config, splits: preprocessing.Splits, strategy: tf.distribute.Strategy):
  """The model, its optimizer, and the train and validation metrics, under `strategy`'s scope.

  Returns:
    (model, optimizer, train_metrics, val_metrics).
  """
  # _train_labels: a prepared (TFRecord) set has no y_train array, only class counts.
  bias = losses.initial_bias(_train_labels(splits), config.strategy)
  with strategy.scope():
    model = build_model(config, num_features=splits.num_features, output_bias=bias)
    optimizer = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
    # Built here, not lazily at the first step: a lazy build inside a multi-replica step fails.
    optimizer.build(model.trainable_variables)
    train_metrics, val_metrics = Metrics(), Metrics()
  return model, optimizer, train_metrics, val_metrics


def make_train_iterator(config: Config, splits: preprocessing.Splits,
                        strategy: tf.distribute.Strategy, *, start_step: int = 0):
  """The distributed iterator over the training stream, resumed at `start_step`."""
  num_replicas = strategy.num_replicas_in_sync
  global_batch = config.batch_size

  def train_fn(ctx: tf.distribute.InputContext):
    make = (splits.train_dataset if config.prepared_dir else
            functools.partial(datasets.train_dataset, splits.x_train, splits.y_train))
    return make(
        strategy=config.strategy,
        batch_size=ctx.get_per_replica_batch_size(global_batch), chunk=config.oversample_chunk,
        seed=config.seed, pipeline_id=ctx.input_pipeline_id,
        num_pipelines=ctx.num_input_pipelines,
        skip=start_step * num_replicas // ctx.num_input_pipelines)

  return iter(strategy.distribute_datasets_from_function(train_fn))


def train_epoch(train_loop, train_iter, metrics: Metrics, *, steps: int, steps_per_loop: int,
                stop_requested=None, bar: progress.EpochBar | None = None,
                ) -> tuple[dict[str, float], float]:
  """Runs `steps` training steps, `steps_per_loop` per compiled call.

  Args:
    stop_requested: optional callable; when it returns True, no further call is started.
    bar: optional progress bar, advanced after each compiled call and closed at the end.

  Returns:
    (the epoch's training metrics, seconds it took, including the wait for the last step).
  """
  metrics.reset()
  t0 = time.perf_counter()
  remaining = steps
  while remaining > 0 and not (stop_requested and stop_requested()):
    n = min(remaining, steps_per_loop)
    train_loop(train_iter, tf.constant(n, tf.int32))
    remaining -= n
    if bar:
      bar.update(n)
  if bar:
    bar.close()
  result = metrics.result()  # Reading a result waits for the steps to finish.
  return result, time.perf_counter() - t0


def train_and_evaluate(config: Config, model_dir: str, *, initial_weights: str | None = None,
                       load_data_fn=None) -> dict:
  """Trains, early-stops, checkpoints and evaluates one model; returns results.json's content.

  Running again on the same model_dir resumes from the newest readable checkpoint. SIGTERM
  saves a checkpoint at the current step and returns early with `{"preempted": True, ...}`.
  In a multi-worker run only the chief writes to model_dir (see distribute.worker_directory).
  At the end the best weights are exported with the threshold chosen on validation
  (engine/export.py).

  Args:
    config: the run's config.
    model_dir: where the run lives.
    initial_weights: a weights checkpoint (engine/compare.py) to start from instead of a fresh
      initialisation, so runs of different strategies start from the same weights; the output
      bias is still this strategy's. Written by the first run that finds none.
    load_data_fn: optional; returns the in-memory (splits, description) instead of
      `input_pipeline.loading.load_splits(config)` (main.py passes a background load's result).

  Raises:
    ConfigError: an invalid config, or a model_dir that cannot be used.
    DataError: input data that cannot be used.
    NumericalError: the training loss became NaN or Inf.
  """
  configure_tensorflow(config)
  strategy, distribution = distribute.make_strategy(config)
  distribute.log_strategy(strategy, distribution)
  num_replicas = strategy.num_replicas_in_sync
  if config.batch_size % num_replicas:
    raise ConfigError(f"invalid --batch_size={config.batch_size}: not divisible by the "
                      f"{num_replicas} replicas")
  with distribute.worker_directory(strategy, model_dir) as work_dir:
    return _check_and_train(config, work_dir, strategy, distribution, initial_weights,
                            load_data_fn)


def _check_and_train(config: Config, model_dir: str, strategy: tf.distribute.Strategy,
                     distribution: str, initial_weights: str | None = None,
                     load_data_fn=None) -> dict:
  run_dir.check_writable(model_dir)
  splits = load_data(config, load_data_fn)
  resuming = run_dir.check_compatible(model_dir, config, splits.preprocessor.feature_names)
  # Everything above only reads. From here on the model directory is written, by one run only.
  with run_dir.RunLock(model_dir), preemption.StopRequest() as stop:
    if config.fresh:
      run_dir.clear(model_dir)
    return _train(config, model_dir, strategy=strategy, distribution=distribution,
                  splits=splits, resuming=resuming, stop=stop, initial_weights=initial_weights)


def _train(config: Config, model_dir: str, *, strategy, distribution: str, splits,
           resuming: bool, stop: preemption.StopRequest,
           initial_weights: str | None = None) -> dict:
  chief = distribute.is_chief(strategy)
  run_dir.write_atomic(os.path.join(model_dir, run_dir.CONFIG_FILE), config.to_json() + "\n")
  splits.preprocessor.save(os.path.join(model_dir, run_dir.PREPROCESSING_FILE))

  num_replicas = strategy.num_replicas_in_sync
  global_batch = config.batch_size
  train_labels = _train_labels(splits)
  epoch_steps = steps_per_epoch(config, len(train_labels))
  class_weights = losses.class_weights(train_labels, config.strategy)
  bias = losses.initial_bias(train_labels, config.strategy)
  logging.info("Strategy %s: class weights %s, initial output bias %.4f, %d steps per epoch",
               config.strategy, np.round(class_weights, 4).tolist(), bias, epoch_steps)

  model, optimizer, train_metrics, val_metrics = create_state(config, splits, strategy)

  epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  # The global step at the end of the last completed epoch: a run stopped mid-epoch (SIGTERM)
  # resumes with the rest of that epoch, not a whole one.
  epoch_start_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_start_step")
  train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
  stopper = EarlyStopping(patience=config.patience,
                          higher_is_better=config.monitor_higher_is_better)
  with strategy.scope():
    best_model = build_model(config, num_features=splits.num_features, output_bias=0.0)
  ckpts = checkpointing.Checkpoints(
      model_dir, model=model, best_model=best_model, keep=config.checkpoints_to_keep,
      interval_seconds=config.checkpoint_interval_seconds,
      state=dict(model=model, optimizer=optimizer, epoch=epoch, epoch_start_step=epoch_start_step,
                 train_seconds=train_seconds, early_stopping=stopper))
  restored = ckpts.restore_latest() if resuming else None
  if restored:
    logging.info("Resumed from %s: epoch %d, step %d", restored, int(epoch.numpy()),
                 int(optimizer.iterations.numpy()))
    # The checkpoint restored the old learning rate with the optimizer; the flag given now wins.
    if not math.isclose(float(optimizer.learning_rate.numpy()), config.learning_rate,
                        rel_tol=1e-6):
      logging.info("Learning rate changed on resume: %g -> %g",
                   float(optimizer.learning_rate.numpy()), config.learning_rate)
      optimizer.learning_rate.assign(config.learning_rate)
  if initial_weights and not restored:
    if tf.io.gfile.exists(initial_weights + ".index"):
      tf.train.Checkpoint(model=model).read(initial_weights).assert_existing_objects_matched()
      # The saved weights carry the first run's output bias; the bias belongs to the strategy.
      model.logit.bias.assign([bias])
      logging.info("Starting from the shared initial weights %s", initial_weights)
    elif chief:
      tf.train.Checkpoint(model=model).write(initial_weights)
  start_step = int(optimizer.iterations.numpy())

  eval_global = max(num_replicas, config.eval_batch_size // num_replicas * num_replicas)

  def val_fn(ctx: tf.distribute.InputContext):
    return _eval_dataset(
        splits, "validation", batch_size=ctx.get_per_replica_batch_size(eval_global),
        global_batch_size=eval_global, pipeline_id=ctx.input_pipeline_id,
        num_pipelines=ctx.num_input_pipelines)

  train_iter = make_train_iterator(config, splits, strategy, start_step=start_step)
  val_data = strategy.distribute_datasets_from_function(val_fn)
  train_loop = make_train_loop(model=model, optimizer=optimizer, strategy=strategy,
                               metrics=train_metrics, class_weights=class_weights,
                               global_batch_size=global_batch, seed=config.seed,
                               jit_compile=config.jit_compile)
  eval_pass = make_eval_pass(model=model, strategy=strategy, metrics=val_metrics)
  host = build_model(config, num_features=splits.num_features, output_bias=0.0)
  score = evaluation.Scorer(host)
  x_val = None if config.prepared_dir else tf.constant(splits.x_val)
  summaries = Summaries(model_dir, enabled=chief)
  if not restored:
    summaries.text("train", "config", "```\n" + config.to_json() + "\n```")

  start_epoch = int(epoch.numpy())
  run_t0 = time.perf_counter()
  def stop_agreed() -> bool:
    # Every worker of a multi-worker run must stop at the same step: they agree on it.
    return distribute.any_worker(strategy, stop.requested)

  while int(epoch.numpy()) < config.epochs and not stopper.should_stop:
    e = int(epoch.numpy()) + 1
    first_step = int(optimizer.iterations.numpy())
    remaining = epoch_steps - (first_step - int(epoch_start_step.numpy()))
    steps_run = max(remaining, 0)
    train_result, dt = train_epoch(train_loop, train_iter, train_metrics, steps=steps_run,
                                   steps_per_loop=config.steps_per_loop,
                                   stop_requested=stop_agreed,
                                   bar=progress.EpochBar(epoch=e, total_steps=steps_run,
                                                         steps_per_call=config.steps_per_loop))
    last_step = int(optimizer.iterations.numpy())
    train_seconds.assign_add(dt)
    if not math.isfinite(train_result["loss"]):
      raise NumericalError(f"training loss is {train_result['loss']} in epoch {e} (steps "
                           f"{first_step + 1}-{last_step}); stopped without saving it; the last "
                           f"checkpoint (step {ckpts.saved_step}) and its best weights are kept "
                           f"in {model_dir}")
    if stop_agreed():
      # No step since the last checkpoint: it already holds this state; rewriting it in place
      # would only risk it.
      path = ckpts.save(last_step) if last_step != ckpts.saved_step else ckpts.latest_path
      summaries.close()
      logging.info("Stopped by %s at step %d (epoch %d, %d of %d steps); saved %s. Run the same "
                   "command again to resume.", stop.signal_name or "a signal to another worker",
                   last_step, e,
                   last_step - int(epoch_start_step.numpy()), epoch_steps, path)
      return {"preempted": True, "step": last_step, "checkpoint": path}
    val_metrics.reset()
    eval_pass(val_data)
    val_result = val_metrics.result()
    val_result.update(exact_validation(host, score, model, splits, x_val))
    examples_per_s = steps_run * global_batch / dt
    train_result["examples_per_second"] = examples_per_s
    summaries.scalars("train", train_result, e)
    summaries.scalars("validation", val_result, e)
    improved = stopper.update(val_result[config.monitor_metric], e)
    epoch.assign(e)
    epoch_start_step.assign(last_step)
    if improved:
      ckpts.keep_best(last_step)
    # Every worker must take part in a save: they agree on whether one is due.
    if distribute.any_worker(strategy, ckpts.due()):
      ckpts.save(last_step)
    summaries.flush()
    # Counted from this process's start: a resumed run's earlier epochs took unknown time.
    eta = progress.eta_seconds(epochs_done=e - start_epoch,
                               epochs_total=config.epochs - start_epoch,
                               seconds_so_far=time.perf_counter() - run_t0)
    logging.info("epoch %3d | step %6d | %9.0f examples/s | ETA %s | train %s | val %s%s", e,
                 last_step, examples_per_s, progress.format_duration(eta), _fmt(train_result),
                 _fmt(val_result),
                 " | best" if improved else f" | wait {int(stopper.wait.numpy())}")

  epochs_run = int(epoch.numpy())
  if stopper.should_stop:
    logging.info("Early stopping after epoch %d: %s has not improved for %d epochs (best %.4f at "
                 "epoch %d)", epochs_run, config.monitor, config.patience,
                 float(stopper.best_value.numpy()), int(stopper.best_epoch.numpy()))
  final_step = int(optimizer.iterations.numpy())
  if ckpts.saved_step != final_step:
    ckpts.save(final_step)
  best_path = ckpts.restore_best()
  logging.info("Evaluating the best weights (%s) on the test split", best_path)

  results, scored = evaluate_best(config, model, host, score, splits, strategy, val_metrics,
                                  eval_pass, eval_global)
  results["threshold"] = thresholds.choose(
      config, val_labels=scored["validation"][0], val_probabilities=scored["validation"][1],
      test_labels=scored["test"][0], test_probabilities=scored["test"][1])
  results.update({
      "strategy": config.strategy, "distribution": distribution, "num_replicas": num_replicas,
      "epochs_run": epochs_run, "best_epoch": int(stopper.best_epoch.numpy()),
      "steps": int(optimizer.iterations.numpy()), "steps_per_epoch": epoch_steps,
      "train_seconds": float(train_seconds.numpy()), "monitor": config.monitor,
      "best_monitor_value": float(stopper.best_value.numpy()),
      "stopped_early": bool(stopper.should_stop), "data": splits.counts(),
  })
  if chief:
    summaries.scalars("test", results["test"], results["best_epoch"])
    summaries.evaluation(results, scored, results["best_epoch"])
    summaries.hparams(config, {"test": ["auc", "prc", "precision", "recall"],
                               "validation": ["auc", "prc", "loss"]})
    export_dir = export.export_model(host, splits.preprocessor, threshold=results["threshold"],
                                     export_dir=os.path.join(model_dir, export.EXPORT_DIR))
    logging.info("Exported the best weights with threshold %.6g to %s",
                 results["threshold"]["value"], export_dir)
    run_dir.write_json(os.path.join(model_dir, run_dir.RESULTS_FILE), results)
  summaries.close()
  th = results["threshold"]
  print(evaluation.format_table({
      "validation": results["validation"], "test": results["test"],
      f"val@{th['value']:.4g}": th["validation"], f"test@{th['value']:.4g}": th["test"]}))
  return results


def exact_validation(host, score, model, splits, x_val) -> dict[str, float]:
  """ROC-AUC and PR-AUC over all validation predictions, on a host copy of the weights.

  Args:
    host: a single-device model of the same architecture; it is given `model`'s weights.
    score: `evaluation.Scorer(host)`.
    model: the model being trained.
    splits: the data.
    x_val: the validation features as a tensor, made once (they are scored every epoch);
      None for a prepared directory, whose split is streamed.
  """
  host.set_weights(model.get_weights())
  if isinstance(splits, prepared.PreparedData):  # Streams the split: predictions only.
    y, p = splits.predict(host, "validation")
  else:
    y = splits.y_val
    p = score(x_val)
  auc, prc = evaluation.roc_auc_and_average_precision(y, evaluation.clip_probabilities(p))
  return {"auc_exact": auc, "prc_exact": prc}


def evaluate_best(config, model, host, score, splits, strategy, metrics, eval_pass, eval_global):
  """Exact test and validation metrics of `model`, plus the streaming ones beside them.

  `host`, a single-device model of the same architecture, is given `model`'s weights and
  scores the splits with `score` (its `evaluation.Scorer`).

  Returns:
    (metrics by split, {split: (labels, probabilities)}).
  """
  host.set_weights(model.get_weights())
  out, scored = {}, {}
  for name in ("validation", "test"):
    if config.prepared_dir:  # Predictions only: the features are streamed, never held.
      y, p = splits.predict(host, name)
    else:
      x, y = _arrays(splits, name)
      p = score(x)
    out[name] = evaluation.exact_metrics(y, p)
    scored[name] = (y, p)
  # The streaming (200-threshold) AUCs on the test split, reported under their own names.
  test_data = strategy.distribute_datasets_from_function(
      lambda ctx: _eval_dataset(
          splits, "test", batch_size=ctx.get_per_replica_batch_size(eval_global),
          global_batch_size=eval_global, pipeline_id=ctx.input_pipeline_id,
          num_pipelines=ctx.num_input_pipelines))
  metrics.reset()
  eval_pass(test_data)
  streaming = metrics.result()
  out["test"]["auc_streaming"] = streaming["auc"]
  out["test"]["prc_streaming"] = streaming["prc"]
  return out, scored


def _train_labels(data) -> np.ndarray:
  """Training labels for the class statistics (counts only). A prepared set stores counts, so
  it gives labels in class order: one byte a row, never the rows themselves."""
  if isinstance(data, prepared.PreparedData):
    return np.repeat(np.array([0, 1], np.int8), data.train_class_counts)
  return data.y_train


def _eval_dataset(data, split: str, **kwargs) -> tf.data.Dataset:
  if isinstance(data, prepared.PreparedData):
    return data.eval_dataset(split, **kwargs)
  return datasets.eval_dataset(*_arrays(data, split), **kwargs)


def _arrays(splits: preprocessing.Splits, split: str) -> tuple[np.ndarray, np.ndarray]:
  if split == "validation":
    return splits.x_val, splits.y_val
  return splits.x_test, splits.y_test
