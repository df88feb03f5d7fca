"""Checkpoints: the latest full training state, and the best weights, in one model directory.

  <model_dir>/checkpoints/  latest state (model, optimizer with its step, epoch, early stopping,
                            elapsed time), the last `keep` of them
  <model_dir>/best/         the weights of the best epoch so far

`tf.train.CheckpointManager` writes the data and index files first and the `checkpoint` state
file last, so a crash mid-write leaves the previous checkpoint named as the latest. Restoring
walks from the newest checkpoint back and skips any that cannot be read, with a warning.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

CHECKPOINTS = "checkpoints"
BEST = "best"


class Checkpoints:
  """The latest-state and best-weights checkpoint managers of one run."""

  def __init__(self, model_dir: str, *, state: dict, model, keep: int):
    self.state = tf.train.Checkpoint(**state)
    self.best = tf.train.Checkpoint(model=model)
    self.latest_manager = tf.train.CheckpointManager(
        self.state, os.path.join(model_dir, CHECKPOINTS), max_to_keep=keep)
    self.best_manager = tf.train.CheckpointManager(
        self.best, os.path.join(model_dir, BEST), max_to_keep=1)

  def restore_latest(self) -> str | None:
    """Restores the newest readable checkpoint; returns its path, or None to start fresh."""
    for path in reversed(self.latest_manager.checkpoints):
      try:
        self.state.restore(path).assert_existing_objects_matched()
        return path
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: try an older one.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        logging.warning("Checkpoint %s cannot be restored (%s); trying the one before it",
                        path, first)
    return None

  @property
  def latest_path(self) -> str | None:
    return self.latest_manager.latest_checkpoint

  def save_latest(self, step: int) -> str:
    return self.latest_manager.save(checkpoint_number=step)

  def save_best(self, step: int) -> str:
    return self.best_manager.save(checkpoint_number=step)

  def restore_best(self) -> str | None:
    path = self.best_manager.latest_checkpoint
    if path:
      self.best.restore(path).assert_existing_objects_matched()
    return path
