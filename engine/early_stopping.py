"""Early stopping with explicit, checkpointed state."""

from __future__ import annotations

import math

import numpy as np
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


class MemberBest(tf.Module):
  """The best validation value of each member of an ensemble, and the epoch it was reached.

  Early stopping follows the ensemble's monitored metric (`EarlyStopping`); each member keeps
  its own best weights, by its own exact validation PR-AUC. Checkpointed with the state.
  """

  def __init__(self, members: int):
    super().__init__(name="member_best")
    self.best_value = tf.Variable(tf.fill([members], tf.constant(-math.inf, tf.float64)),
                                  trainable=False, name="best_value")
    self.best_epoch = tf.Variable(tf.zeros([members], tf.int64), trainable=False,
                                  name="best_epoch")

  def update(self, values, epoch: int) -> np.ndarray:
    """Records each member's value of `epoch`; returns the mask of members that improved.

    NaN never counts as an improvement.
    """
    values = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore"):
      improved = values > self.best_value.numpy()  # False for NaN
    self.best_value.assign(np.where(improved, values, self.best_value.numpy()))
    self.best_epoch.assign(np.where(improved, epoch, self.best_epoch.numpy()))
    return improved

  def mark(self, improved: np.ndarray, epoch: int) -> np.ndarray:
    """Records `epoch` as the best of the members in the mask `improved`; returns the mask."""
    self.best_epoch.assign(np.where(improved, epoch, self.best_epoch.numpy()))
    return improved
