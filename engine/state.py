"""The training state: everything a checkpoint holds, as one `tf.Module`.

  model, optimizer (its `iterations` are the global step), best_model (the best weights so far),
  average_model (with `--ema_momentum`: the moving average of the weights, which is what is
  evaluated, kept as best and exported), epoch, epoch_start_step, train_seconds, early_stopping

`create` builds it under the strategy's scope; `restore_or_initialize` resumes it from the
newest readable checkpoint, or starts it (from shared initial weights where `--strategy=all`
gives them).
"""

from __future__ import annotations

import logging
import math

import tensorflow as tf

from engine.early_stopping import EarlyStopping, MemberBest
from engine import models


class TrainState(tf.Module):
  """Model, optimizer, best weights, epoch counters, elapsed time and early stopping."""

  def __init__(self, *, model, optimizer, best_model, early_stopping: EarlyStopping,
               average_model=None, layout=None):
    super().__init__(name="train_state")
    self.model, self.optimizer, self.best_model = model, optimizer, best_model
    self.layout = layout  # What the model was built for (input_pipeline/layout.py).
    self.average_model = average_model
    self.early_stopping = early_stopping
    # Members that share weights have one best between them: the ensemble's.
    self.member_best = MemberBest(model.members if model.own_rows else 1)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    # The global step at the end of the last completed epoch: a run stopped mid-epoch (SIGTERM)
    # resumes with the rest of that epoch, not a whole one.
    self.epoch_start_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name="epoch_start_step")
    self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  @property
  def evaluated_model(self):
    """The weights that are scored, kept as the best and exported: the average, if kept."""
    return self.model if self.average_model is None else self.average_model

  def checkpointed(self) -> dict:
    """The objects of the training checkpoint, by the names its files use."""
    objects = dict(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                   epoch_start_step=self.epoch_start_step, train_seconds=self.train_seconds,
                   early_stopping=self.early_stopping, member_best=self.member_best)
    if self.average_model is not None:
      objects["average_model"] = self.average_model
    return objects


def make_optimizer(config) -> tf.keras.optimizers.Optimizer:
  """Adam, or AdamW with `weight_decay` on the kernels (never on biases: decaying the output
  bias would pull the prior it encodes towards 1/2)."""
  if not config.weight_decay:
    return tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
  optimizer = tf.keras.optimizers.AdamW(learning_rate=config.learning_rate,
                                        weight_decay=config.weight_decay)
  optimizer.exclude_from_weight_decay(var_names=["bias"])
  return optimizer


def create(config, *, layout, output_bias: float, strategy) -> TrainState:
  """The state of a new run, its variables created under `strategy`'s scope.

  Args:
    layout: the `input_pipeline.layout.FeatureLayout` of the features the model reads.
  """
  with strategy.scope():
    model = models.build(config, layout, output_bias=output_bias)
    optimizer = make_optimizer(config)
    # Built here, not lazily at the first step: a lazy build inside a multi-replica step fails.
    optimizer.build(model.trainable_variables)
    best_model = models.build(config, layout, output_bias=0.0)
    average_model = (models.build(config, layout, output_bias=0.0)
                     if config.ema_momentum else None)
  stopper = EarlyStopping(patience=config.patience,
                          higher_is_better=config.monitor_higher_is_better)
  return TrainState(model=model, optimizer=optimizer, best_model=best_model,
                    early_stopping=stopper, average_model=average_model, layout=layout)


def restore_or_initialize(state: TrainState, ckpts, *, config, resuming: bool,
                          initial_weights: str | None, output_bias: float,
                          chief: bool) -> str | None:
  """Resumes from the newest readable checkpoint, or starts from shared initial weights.

  On resume the learning rate given now wins over the checkpointed one. Without a checkpoint,
  `initial_weights` (a weights checkpoint of engine/compare.py) is read if it exists, with this
  strategy's output bias, or written by the chief if it does not.

  Returns:
    The restored checkpoint's path, or None for a fresh start.
  """
  restored = ckpts.restore_latest() if resuming else None
  optimizer = state.optimizer
  if restored:
    logging.info("Resumed from %s: epoch %d, step %d", restored, int(state.epoch.numpy()),
                 state.step)
    old = float(optimizer.learning_rate.numpy())
    if not math.isclose(old, config.learning_rate, rel_tol=1e-6):
      logging.info("Learning rate changed on resume: %g -> %g", old, config.learning_rate)
      optimizer.learning_rate.assign(config.learning_rate)
    return restored
  if initial_weights and tf.io.gfile.exists(initial_weights + ".index"):
    tf.train.Checkpoint(model=state.model).read(initial_weights).assert_existing_objects_matched()
    # The saved weights carry the first run's output bias; the bias belongs to the strategy.
    bias = state.model.output_bias
    bias.assign(tf.fill(bias.shape, tf.constant(output_bias, bias.dtype)))
    logging.info("Starting from the shared initial weights %s", initial_weights)
  elif initial_weights and chief:
    tf.train.Checkpoint(model=state.model).write(initial_weights)
  if state.average_model is not None:  # The average starts at the initial weights.
    for average, weight in zip(state.average_model.weights, state.model.weights):
      average.assign(weight)
  return None
