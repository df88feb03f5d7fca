"""What every config section is made of: the allowed values, `option` (a field with what the
flags, the resume check and HParams need to know of it), and the checks the sections run.

No TensorFlow is imported: main.py builds and validates the config before the import.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
from typing import Any

STRATEGIES = ("baseline", "class_weight", "oversample")
DISTRIBUTIONS = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
CALIBRATIONS = ("platt", "prior")
DATASETS = ("creditcard", "synthetic")
CLEANINGS = ("auto", "on", "off")
# The ways of cutting the rows into train, validation and test (not the split names).
SPLIT_METHODS = ("random", "time")
# Metrics the early-stopping monitor may name: `val_` + one of these, as the loop computes them
# on the whole validation split (`auc` and `prc` exact, over all predictions; `*_exact` are
# their older names).
MONITORABLE = ("loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "auc", "prc",
               "auc_exact", "prc_exact")

# An epoch is an evaluation interval, not a pass over the data: this many steps for every
# strategy. The oversampled stream draws with replacement, so a pass means nothing for it; and
# at the default batch a pass over the credit-card training split is a few hundred steps, while
# the models are best after a few passes' worth (BUILD.md, "Model quality"): early stopping
# needs to look every few dozen steps, and scoring the validation split that often stays cheap.
DEFAULT_STEPS_PER_EPOCH = 50


# The model family of a run that names none (`--model`). Its plug-in's `DEFAULTS` then fill
# every field the run does not set (`family_defaults`).
DEFAULT_MODEL = "tabm"


def default_model() -> str:
  """DEFAULT_MODEL, read when a config is made (the test suite sets its own)."""
  return DEFAULT_MODEL


class ConfigError(ValueError):
  """A configuration value is invalid. The message names the field and the value."""


def plugins(package: str) -> tuple[str, ...]:
  """The plug-ins of `engine/<package>/` (models, losses): its modules' names, found without
  importing them."""
  folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        package)
  return tuple(sorted(f[:-3] for f in os.listdir(folder)
                      if f.endswith(".py") and not f.startswith("_")))


@functools.lru_cache(maxsize=None)
def _declared_defaults(path: str) -> tuple:
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    if any(isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in targets) and node.value:
      return tuple(ast.literal_eval(node.value).items())
  return ()


def family_defaults(package: str, name: str) -> dict[str, Any]:
  """The `DEFAULTS` a plug-in module declares, {flat field name: value}, read from its source
  without importing it (so without TensorFlow): the values of the fields a run of that plug-in
  does not set. {} for a module that declares none, or no such plug-in (the config's own check
  then names the bad value)."""
  if name not in plugins(package):
    return {}
  folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package)
  return dict(_declared_defaults(os.path.join(folder, f"{name}.py")))


def option(default: Any, help: str, *, flag: str | None = None, choices=None,
           compat: bool = False, hparam: bool = False):
  """A config field with what the flags, the resume check and HParams need to know of it.

  Args:
    default: the default value (a tuple for a list flag).
    help: the flag's help text.
    flag: the flag's (and config.json's) name, if not the field's.
    choices: the allowed values of an enum flag (a callable: computed when asked).
    compat: a resumed run must keep this value (engine/run_dir.py).
    hparam: shown in TensorBoard's HParams table.
  """
  return dataclasses.field(default=default, metadata=dict(
      help=help, flag=flag, choices=choices, compat=compat, hparam=hparam))


def _require(ok: bool, field: str, value: Any, why: str) -> None:
  if not ok:
    raise ConfigError(f"invalid --{field}={value!r}: {why}")


def _positive_ints(section, names) -> None:
  for name in names:
    value = getattr(section, name)
    _require(isinstance(value, int) and value > 0, name, value, "must be a positive integer")


def _one_of(field: str, value: Any, allowed) -> None:
  _require(value in allowed, field, value, f"must be one of {', '.join(allowed)}")
