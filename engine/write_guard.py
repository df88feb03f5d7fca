"""Failures to write the run's files (disk full, read-only file system, quota): one line, not a
traceback, and nothing good lost.

Every write of a run (checkpoints, summaries, export, results) happens inside `guard(what)`,
which turns the OS's or TensorFlow's error into a `WriteError` naming what was being written,
where, and the cause. The checkpoint state file is written last and atomically, so a failed
checkpoint write leaves the previous checkpoint the latest one: the next run resumes from it.
"""

from __future__ import annotations

import contextlib
import re


class WriteError(RuntimeError):
  """A file of the run could not be written. The message names the path and the cause."""


def _cause(message: str) -> str:
  """'No space left on device' out of TensorFlow's '{{function_node ...}} path; cause [Op:X]'."""
  text = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", message.strip().splitlines()[0])
  return text.rsplit("; ", 1)[-1].strip() or text


@contextlib.contextmanager
def guard(what: str, path: str):
  """Turns a failed write of `what` at `path` into a one-line WriteError."""
  import tensorflow as tf
  try:
    yield
  except OSError as e:
    where = e.filename or path
    raise WriteError(f"cannot write {what} to {where}: {e.strerror or e}") from None
  except tf.errors.OpError as e:
    raise WriteError(f"cannot write {what} to {path}: {_cause(e.message)}") from None
