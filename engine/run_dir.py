"""The model directory: what a run keeps there, and the checks before anything is written.

  config.json          the config of the run that owns the directory
  preprocessing.json   the fitted preprocessing (raw columns in, model features out)
  checkpoints/ best/   see engine/checkpointing.py
  logs/                TensorBoard
  results.json         test metrics of the best weights
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile

from engine.config import Config, ConfigError

CONFIG_FILE = "config.json"
PREPROCESSING_FILE = "preprocessing.json"
RESULTS_FILE = "results.json"
OWNED = (CONFIG_FILE, PREPROCESSING_FILE, RESULTS_FILE, "checkpoints", "best", "logs", "export")

# A resumed run must build the same model on the same features with the same strategy; these
# fields decide that. The rest (epochs, patience, distribution...) may change between runs.
COMPATIBLE_FIELDS = ("strategy", "hidden_units", "label_column", "dataset")


def write_atomic(path: str, text: str) -> None:
  """Writes text to path via a temporary file and a rename: never a half-written file."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path), suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, value) -> None:
  write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def check_writable(model_dir: str) -> None:
  """Raises ConfigError unless model_dir exists or can be created, and is writable.

  Probes with an unnamed temporary file in the nearest existing directory: nothing is left
  behind, and it works where permission bits say nothing (root, read-only mounts).
  """
  probe_dir = os.path.abspath(model_dir)
  while not os.path.exists(probe_dir):
    probe_dir = os.path.dirname(probe_dir)
  if not os.path.isdir(probe_dir):
    raise ConfigError(f"invalid --model_dir={model_dir}: {probe_dir} is a file, not a directory")
  try:
    with tempfile.TemporaryFile(dir=probe_dir):
      pass
  except OSError as e:
    raise ConfigError(f"invalid --model_dir={model_dir}: {probe_dir} is not writable "
                      f"({e.strerror})") from None


class RunLock:
  """An exclusive lock on a model directory, so two runs never write to it at once.

  `flock` on `<model_dir>/.lock`: the kernel releases it when the holder exits, however it exits
  (SIGKILL included), so a killed run never leaves a stale lock behind. The file itself stays
  (empty when no run holds it): deleting it would let two runs lock two different files.
  """

  NAME = ".lock"

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, self.NAME)
    self._fd = None

  def acquire(self) -> "RunLock":
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
      os.close(fd)
      if e.errno in (errno.EAGAIN, errno.EACCES):
        raise ConfigError(f"--model_dir={os.path.dirname(self.path)} is in use by a running "
                          f"job ({holder}); wait for it, stop it, or use another --model_dir")
      raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    self._fd = fd
    return self

  def release(self) -> None:
    # The file is never deleted: between an unlink and the unlock another run could open the
    # old file and lock it while a third creates and locks a new one, two holders of "the" lock.
    # Emptied while still held, so a later refusal does not name a finished run.
    if self._fd is not None:
      os.ftruncate(self._fd, 0)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def check_compatible(model_dir: str, config: Config, feature_names: list[str]) -> bool:
  """True if model_dir holds a run to resume; raises ConfigError if that run cannot be resumed.

  With `fresh`, an existing run is never a reason to refuse (it will be replaced).
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path) or config.fresh:
    return False
  try:
    with open(path) as f:
      old = json.load(f)
    with open(os.path.join(model_dir, PREPROCESSING_FILE)) as f:
      old_features = json.load(f)["feature_names"]
  except (OSError, ValueError, KeyError) as e:
    raise ConfigError(f"--model_dir={model_dir} holds an unreadable run ({e}); "
                      "pass --fresh to start over") from None
  new = config.to_dict()
  for field in COMPATIBLE_FIELDS:
    if old.get(field) != new[field]:
      raise ConfigError(f"--model_dir={model_dir} holds a run with {field}={old.get(field)!r}, "
                        f"not {new[field]!r}; use another --model_dir or pass --fresh")
  if old_features != feature_names:
    raise ConfigError(f"--model_dir={model_dir} holds a run trained on other features "
                      f"({len(old_features)} columns); use another --model_dir or pass --fresh")
  return True


def clear(model_dir: str) -> None:
  """Removes what a run owns in model_dir (for --fresh); leaves other files alone."""
  for name in OWNED:
    path = os.path.join(model_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
