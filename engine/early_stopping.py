"""Early stopping with explicit, checkpointed state."""

from __future__ import annotations

import math

import tensorflow as tf


class EarlyStopping(tf.Module):
  """Tracks the best value of a monitored metric and the patience left.

  Its state is variables, so it is saved in the training checkpoint: a resumed run continues
  with the same best value and the same patience, rather than starting over.
  """

  def __init__(self, *, patience: int, higher_is_better: bool):
    super().__init__(name="early_stopping")
    self.patience = int(patience)
    self.higher_is_better = bool(higher_is_better)
    worst = -math.inf if higher_is_better else math.inf
    self.best_value = tf.Variable(worst, dtype=tf.float64, trainable=False, name="best_value")
    self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
    self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="wait")

  def update(self, value: float, epoch: int) -> bool:
    """Records the metric of `epoch`; returns True if it is a new best.

    NaN never counts as an improvement.
    """
    best = float(self.best_value.numpy())
    better = value > best if self.higher_is_better else value < best
    if better and not math.isnan(value):
      self.best_value.assign(value)
      self.best_epoch.assign(epoch)
      self.wait.assign(0)
      return True
    self.wait.assign_add(1)
    return False

  @property
  def should_stop(self) -> bool:
    return int(self.wait.numpy()) >= self.patience

  def state(self) -> dict:
    return {"best_value": float(self.best_value.numpy()),
            "best_epoch": int(self.best_epoch.numpy()), "wait": int(self.wait.numpy()),
            "patience": self.patience}
