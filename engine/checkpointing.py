"""Checkpoints: the latest full training state, and the best weights, in one model directory.

  <model_dir>/checkpoints/  latest state (model, optimizer with its step, epoch, early stopping,
                            elapsed time, the best weights so far), the last `keep` of them
  <model_dir>/best/         the best weights, as of the latest checkpoint

The best weights are a second copy of the model's variables, updated in memory when an epoch
improves, and part of the training state. So the latest checkpoint always holds the very best
weights its early-stopping state refers to, and `best/` is written with it. The latest state is
written at the end of an epoch once `interval_seconds` have passed since the last write, at the
end of training, and on SIGTERM: writing two checkpoints every epoch can cost as much as the
epoch's training steps on a small CPU; a run killed without warning resumes from the last write
instead (the stream replays exactly from any step).

`tf.train.CheckpointManager` writes the data and index files first and the `checkpoint` state
file last, so a crash mid-write leaves the previous checkpoint named as the latest. Restoring
walks from the newest checkpoint back and skips any that cannot be read, with a warning.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import tensorflow as tf

CHECKPOINTS = "checkpoints"
BEST = "best"


class Checkpoints:
  """The latest-state and best-weights checkpoints of one run.

  Args:
    model_dir: the run's directory.
    state: the objects of the training state (the model among them).
    model: the model being trained.
    best_model: a model of the same architecture that holds the best weights.
    keep: latest checkpoints kept.
    interval_seconds: `due()` once this much time has passed since the last write (0: always).
  """

  def __init__(self, model_dir: str, *, state: dict, model, best_model, keep: int,
               interval_seconds: float = 0.0):
    self.state = tf.train.Checkpoint(best_model=best_model, **state)
    self.best = tf.train.Checkpoint(model=best_model)
    self.latest_manager = tf.train.CheckpointManager(
        self.state, os.path.join(model_dir, CHECKPOINTS), max_to_keep=keep)
    self.best_manager = tf.train.CheckpointManager(
        self.best, os.path.join(model_dir, BEST), max_to_keep=1)
    self.model, self.best_model = model, best_model
    self.interval_seconds = interval_seconds
    self.saved_step: int | None = None  # The step of the newest checkpoint on disk.
    self._best_step: int | None = None  # The step of best weights not yet in best/.
    self._saved_at = time.monotonic()

  def restore_latest(self) -> str | None:
    """Restores the newest readable checkpoint; returns its path, or None to start fresh."""
    for path in reversed(self.latest_manager.checkpoints):
      try:
        self.state.restore(path).assert_existing_objects_matched()
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: try an older one.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        logging.warning("Checkpoint %s cannot be restored (%s); trying the one before it",
                        path, first)
        continue
      self.saved_step = int(path.rsplit("-", 1)[1])
      return path
    return None

  @property
  def latest_path(self) -> str | None:
    return self.latest_manager.latest_checkpoint

  def keep_best(self, step: int, members=None) -> None:
    """Makes the model's current weights the best weights (in memory until `save`).

    Args:
      step: the global step of these weights.
      members: optional boolean mask [K]: only these members' weights (every variable of the
        model is stacked by member on its first axis). A mask of one entry is the whole model
        (one member, or members that share weights). Default: all.
    """
    if members is not None and np.size(members) == 1:
      if not np.asarray(members).ravel()[0]:
        self._best_step = step
        return
      members = None
    for best, current in zip(self.best_model.weights, self.model.weights):
      if members is None:
        best.assign(current)
      else:
        mask = np.reshape(np.asarray(members, bool), [-1] + [1] * (len(best.shape) - 1))
        best.assign(tf.where(mask, current, best))
    self._best_step = step

  def due(self) -> bool:
    """True once `interval_seconds` have passed since the last write."""
    return time.monotonic() - self._saved_at >= self.interval_seconds

  def save(self, step: int) -> str:
    """Writes new best weights to best/ (numbered by their step), then the latest state."""
    if self._best_step is not None:
      self.best_manager.save(checkpoint_number=self._best_step)
      self._best_step = None
    path = self.latest_manager.save(checkpoint_number=step)
    self.saved_step = step
    self._saved_at = time.monotonic()
    return path

  def restore_best(self) -> str | None:
    """Gives the model the best weights; returns the best/ checkpoint that holds them."""
    for current, best in zip(self.model.weights, self.best_model.weights):
      current.assign(best)
    return self.best_manager.latest_checkpoint


def restore_reported(ckpts: Checkpoints, *, state, monitor: str) -> dict:
  """Gives the model the weights a run reports and exports; returns results.json's "weights".

  One model: its best epoch's weights (`{"which": "best", "epoch": e}`); if no epoch ever
  improved the monitored value (NaN every epoch, say), its last weights instead, saying so
  (`{"which": "last", "why": ...}`): never the initial weights silently. An ensemble: each
  member's own best epoch's (by its own validation PR-AUC), `{"which": "best", "epochs":
  [e_0, ...]}`; a member that never improved keeps its last weights, listed in "last".

  Args:
    ckpts: the run's checkpoints; their best weights are made the model's.
    state: the run's `engine.state.TrainState`.
    monitor: the early-stopping metric's name, for the message.
  """
  if state.member_best.best_epoch.shape[0] > 1:
    return _restore_member_best(ckpts, state)
  stopper = state.early_stopping
  if int(stopper.best_epoch.numpy()) == 0:
    why = (f"no epoch improved {monitor} (its value was never a number better than the "
           f"initial one): reporting and exporting the last weights, not a best epoch")
    logging.warning("%s", why)
    return {"which": "last", "why": why}
  logging.info("Evaluating the best weights (%s) on the test split", ckpts.restore_best())
  return {"which": "best", "epoch": int(stopper.best_epoch.numpy())}


def _restore_member_best(ckpts: Checkpoints, state) -> dict:
  epochs = state.member_best.best_epoch.numpy()
  never = epochs == 0
  if never.any():
    ckpts.keep_best(state.step, members=never)
  epochs = np.where(never, int(state.epoch.numpy()), epochs).tolist()
  listed = (", ".join(map(str, epochs)) if len(epochs) <= 12 else  # A terminal's width.
            f"{min(epochs)}-{max(epochs)}, each in results.json")
  logging.info("Evaluating each member's best weights (epochs %s; %s) on the test split",
               listed, ckpts.restore_best())
  weights = {"which": "best", "epochs": epochs}
  if never.any():
    weights["last"] = np.flatnonzero(never).tolist()
    weights["why"] = ("members " + ", ".join(map(str, weights["last"])) + " never improved "
                      "their validation PR-AUC: their last weights are reported and exported")
    logging.warning("%s", weights["why"])
  return weights
