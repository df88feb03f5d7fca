"""The model directory: what a run keeps there, and the checks before anything is written.

  config.json          the config of the run that owns the directory
  data.json            what the data file was (absolute path, size, content fingerprint)
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
from engine.config import fields as config_fields
from input_pipeline import sources

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
PREPROCESSING_FILE = "preprocessing.json"
RESULTS_FILE = "results.json"
OWNED = (CONFIG_FILE, DATA_FILE, PREPROCESSING_FILE, RESULTS_FILE, "checkpoints", "best", "logs",
         "export")
# input_pipeline/prepared.py's METADATA_FILE; that module imports TensorFlow, this one does not.
PREPARED_METADATA_FILE = "metadata.json"

# A resumed run must build the same model on the same features with the same strategy, and read
# the same rows split the same way: another seed, fraction or file would re-split the rows and
# train on the run's test rows. These fields decide that. The rest (epochs, patience, learning
# rate, distribution, batch size...) may change between runs.
# The model's fields are checked before the features, the data's after: a file with other
# columns is reported as other features, the plainer reason.
# positive_fraction: the stream a run draws and the prior correction of its scores; its default
# changed (0.05 -> 0.01 -> 0.005), so a run started before must not resume with the new one.
# The fields a resumed run must keep (engine/config.py marks them `compat`): those that change
# the model, checked before the features, and those that change the rows, after.
DATA_FIELDS = tuple(f.name for f in config_fields() if f.compat and f.section == "data")
MODEL_FIELDS = tuple(f.name for f in config_fields() if f.compat and f.section != "data")
COMPATIBLE_FIELDS = MODEL_FIELDS + DATA_FIELDS
# Compared as absolute paths: the same file named from another directory is the same file.
PATH_FIELDS = ("data_path", "prepared_dir")


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


def _abspath(path: str | None) -> str | None:
  return os.path.abspath(path) if path else None


def _data_file(config: Config) -> str | None:
  """The file whose content decides the rows: the CSV, or the prepared set's metadata (it
  records the split and the statistics, and names every shard). None for the credit-card set
  (verified against its sha256 at every start) and synthetic data (fixed by rows and seed)."""
  if config.prepared_dir:
    return os.path.join(config.prepared_dir, PREPARED_METADATA_FILE)
  return config.data_path


def data_identity(config: Config) -> dict:
  """What data.json records: the data's absolute paths and, for a file, its size and
  `sources.fingerprint`.

  Raises:
    ConfigError: the data file cannot be read.
  """
  identity = {field: _abspath(getattr(config, field)) for field in PATH_FIELDS}
  path = _data_file(config)
  if path:
    try:
      identity.update(fingerprint=sources.fingerprint(path), size=os.path.getsize(path))
    except OSError as e:
      raise ConfigError(f"cannot read {path} to fingerprint it: {e.strerror}") from None
  return identity


def write_data_identity(model_dir: str, config: Config) -> None:
  """Writes data.json, so a resume can check it reads the same data (see check_compatible)."""
  write_json(os.path.join(model_dir, DATA_FILE), data_identity(config))


def check_compatible(model_dir: str, config: Config, feature_names: list[str]) -> bool:
  """True if model_dir holds a run to resume; raises ConfigError if that run cannot be resumed.

  A resume must build the same model (strategy, hidden units) on the same features from the
  same rows split the same way: COMPATIBLE_FIELDS of config.json, and the data file's
  fingerprint in data.json when the run recorded one. With `fresh`, an existing run is never a
  reason to refuse (it will be replaced).
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path) or config.fresh:
    return False
  data_path = os.path.join(model_dir, DATA_FILE)
  try:
    with open(path) as f:
      old = json.load(f)
    with open(os.path.join(model_dir, PREPROCESSING_FILE)) as f:
      old_features = json.load(f)["feature_names"]
    old_data = None
    if os.path.exists(data_path):
      with open(data_path) as f:
        old_data = json.load(f)
  except (OSError, ValueError, KeyError) as e:
    raise ConfigError(f"--model_dir={model_dir} holds an unreadable run ({e}); "
                      "pass --fresh to start over") from None
  new = config.to_dict()
  for field in PATH_FIELDS:
    # data.json holds the absolute path; config.json the path as given, from the run's cwd.
    recorded = old_data.get(field) if old_data and field in old_data else old.get(field)
    old[field], new[field] = _abspath(recorded), _abspath(new[field])

  # A run written before a field existed ran with its default.
  defaults = Config().to_dict()

  def check(fields):
    for field in fields:
      if old.get(field, defaults[field]) != new[field]:
        raise ConfigError(f"--model_dir={model_dir} holds a run with {field}="
                          f"{old.get(field)!r}, not {new[field]!r}; use another --model_dir or "
                          "pass --fresh")

  check(MODEL_FIELDS)
  if old_features != feature_names:
    raise ConfigError(f"--model_dir={model_dir} holds a run trained on other features "
                      f"({len(old_features)} columns); use another --model_dir or pass --fresh")
  check(DATA_FIELDS)
  _check_monitor(model_dir, config, old.get("monitor", defaults["monitor"]))
  if old_data and "fingerprint" in old_data:
    now = data_identity(config)
    if (now.get("fingerprint"), now.get("size")) != (old_data["fingerprint"], old_data.get("size")):
      raise ConfigError(
          f"--model_dir={model_dir} holds a run with fingerprint={old_data['fingerprint'][:16]} "
          f"({old_data.get('size')} bytes) of {_data_file(config)}, not "
          f"{str(now.get('fingerprint'))[:16]} ({now.get('size')} bytes): the data changed; "
          "use another --model_dir or pass --fresh")
  return True


def _check_monitor(model_dir: str, config: Config, old: str) -> None:
  """The checkpointed early-stopping state (best value, patience left) is of the run's monitor:
  another would be compared with that metric's best. Older names of one metric are the same."""
  try:
    same = config.replace(monitor=old).monitor_metric == config.monitor_metric
  except ConfigError:  # A name this version no longer knows: not the same metric.
    same = False
  if not same:
    raise ConfigError(f"--model_dir={model_dir} holds a run that early-stops on monitor={old!r}, "
                      f"not {config.monitor!r}: its best value and patience are {old}'s; resume "
                      f"with --monitor={old}, use another --model_dir or pass --fresh")


def clear(model_dir: str) -> None:
  """Removes what a run owns in model_dir (for --fresh); leaves other files alone."""
  for name in OWNED:
    path = os.path.join(model_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
