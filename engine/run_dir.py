"""The model directory: what a run keeps there, and the checks before anything is written.

  config.json          the config of the run that owns the directory
  preprocessing.json   the fitted preprocessing (raw columns in, model features out)
  checkpoints/ best/   see engine/checkpointing.py
  logs/                TensorBoard
  results.json         test metrics of the best weights
"""

from __future__ import annotations

import json
import os
import shutil
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
  """Raises ConfigError unless model_dir exists or can be created, and is writable."""
  probe_dir = model_dir
  while not os.path.exists(probe_dir):
    parent = os.path.dirname(os.path.abspath(probe_dir))
    if parent == probe_dir:
      break
    probe_dir = parent
  if os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise ConfigError(f"invalid --model_dir={model_dir}: it is a file, not a directory")
  if not os.access(probe_dir, os.W_OK | os.X_OK):
    raise ConfigError(f"invalid --model_dir={model_dir}: {probe_dir} is not writable")


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
