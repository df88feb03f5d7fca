"""The one place that writes TensorBoard summaries."""

from __future__ import annotations

import os

import tensorflow as tf


class Summaries:
  """Writers for `<model_dir>/logs/{train,validation,test}`; a no-op where `enabled` is False."""

  def __init__(self, model_dir: str, enabled: bool = True):
    self.enabled = enabled
    self._writers = {}
    self._root = os.path.join(model_dir, "logs")

  def writer(self, name: str):
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(os.path.join(self._root, name))
    return self._writers[name]

  def scalars(self, name: str, values: dict[str, float], step: int) -> None:
    if not self.enabled:
      return
    with self.writer(name).as_default(step=step):
      for tag, value in values.items():
        tf.summary.scalar(tag, value)

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
