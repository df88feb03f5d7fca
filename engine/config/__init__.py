"""The one configuration object of a run, in sections.

`main.py` is the only place that reads flags; it builds a `Config` and hands it to the library.
A `Config` holds six sections (data, model, train, evaluation, export, run), each a frozen
dataclass that validates itself, with the bad value in the message (engine/config/sections.py).
Every field is written once there, with its help text: the flags, `to_dict` (config.json), the fields a resumed run must
keep (`compat`) and the HParams are derived from the fields' metadata.

A field's flat name (its flag's name, and its key in config.json) is unique across the
sections, so `config.batch_size` reads `config.train.batch_size`. This module imports no
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from engine.config.options import (  # noqa: F401 - the config's interface
    CALIBRATIONS, CLEANINGS, DATASETS, DEFAULT_STEPS_PER_EPOCH, DISTRIBUTIONS, MONITORABLE,
    SPLIT_METHODS, STRATEGIES, ConfigError, default_model, family_defaults, plugins)
from engine.config.sections import (  # noqa: F401 - the config's interface
    SECTIONS, DataConfig, EvaluationConfig, ExportConfig, ModelConfig, RunConfig, TrainConfig)


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field, as the flags, config.json and the resume check see it."""

  name: str            # flat name: the flag and the config.json key
  section: str
  attribute: str       # the field's name in its section
  default: Any
  type: Any            # the annotation, as a string
  help: str
  choices: tuple | None
  compat: bool
  hparam: bool


def fields() -> list[Field]:
  """Every field of every section, in order; flat names are unique."""
  out = []
  for section, cls in SECTIONS.items():
    for f in dataclasses.fields(cls):
      meta = f.metadata
      choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
      out.append(Field(name=meta["flag"] or f.name, section=section, attribute=f.name,
                       default=f.default, type=f.type, help=meta["help"],
                       choices=tuple(choices) if choices else None, compat=meta["compat"],
                       hparam=meta["hparam"]))
  return out


_FIELDS = {f.name: f for f in fields()}
assert len(_FIELDS) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()), \
    "a flat name is used twice"


class Config:
  """Everything that decides what a run does: six frozen sections.

  `Config(batch_size=256, model="mlp")` takes flat names (the flags'); a section may be given
  whole (`Config(train=TrainConfig(...))`). A field not given takes its model family's value
  (`DEFAULTS` in engine/models/NAME.py, the family `model` names or options.DEFAULT_MODEL),
  else the field's own default. Frozen: a run never changes its own config.
  """

  __slots__ = tuple(SECTIONS) + ("_given",)

  def __init__(self, **values: Any):
    by_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    given = {}
    for name, value in values.items():
      if name in SECTIONS and isinstance(value, SECTIONS[name]):
        given[name] = value
      elif name not in _FIELDS:
        raise ConfigError(f"unknown config field '{name}'")
    explicit = {n for n in values if n in _FIELDS} | {
        f.name for f in _FIELDS.values() if f.section in given}
    family = values.get("model") or (given["model"].name if "model" in given else None)
    family_values = family_defaults("models", family or default_model())
    chosen = {**{n: v for n, v in family_values.items() if n not in explicit},
              **{n: v for n, v in values.items() if n in _FIELDS}}
    for name, value in chosen.items():
      f = _FIELDS[name]
      by_section[f.section][f.attribute] = tuple(value) if isinstance(value, list) else value
    for section, cls in SECTIONS.items():
      value = given.get(section)
      if value is None or by_section[section]:
        value = dataclasses.replace(value or cls(), **by_section[section])
      object.__setattr__(self, section, value)
    object.__setattr__(self, "_given", frozenset(explicit))

  def __getattr__(self, name: str) -> Any:
    f = _FIELDS.get(name)
    if f is None:
      raise AttributeError(f"Config has no field '{name}'")
    return getattr(object.__getattribute__(self, f.section), f.attribute)

  def __setattr__(self, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field '{name}'")

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Config) and all(
        getattr(self, s) == getattr(other, s) for s in SECTIONS)

  def __repr__(self) -> str:
    return f"Config({', '.join(f'{s}={getattr(self, s)!r}' for s in SECTIONS)})"

  def __reduce__(self):  # Pickled by value: the background load sends it to a child process.
    return (_from_dict, (self.to_dict(), sorted(self._given)))

  def replace(self, **changes: Any) -> "Config":
    """A copy with `changes`; the fields this config was not given are taken afresh, so a
    change of `model` brings the new family's defaults."""
    kept = {k: v for k, v in self.to_dict(raw=True).items() if k in self._given}
    return Config(**{**kept, **changes})

  def to_dict(self, raw: bool = False) -> dict[str, Any]:
    """The flat fields, by flag name (config.json's content); tuples as lists unless `raw`."""
    out = {}
    for f in _FIELDS.values():
      value = getattr(getattr(self, f.section), f.attribute)
      out[f.name] = list(value) if isinstance(value, tuple) and not raw else value
    return out

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @property
  def monitor_metric(self) -> str:
    """The validation metric the monitor names, without the `val_` prefix.

    `prc` and `auc` are the exact areas; `prc_exact` and `auc_exact`, their older names, mean
    the same metrics.
    """
    name = self.monitor[len("val_"):]
    return {"prc_exact": "prc", "auc_exact": "auc"}.get(name, name)

  @property
  def monitor_higher_is_better(self) -> bool:
    return self.monitor_metric not in ("loss", "fp", "fn")


def _from_dict(values: dict, given=None) -> Config:
  config = Config(**values)
  if given is not None:
    object.__setattr__(config, "_given", frozenset(given))
  return config


def compat_fields() -> tuple[str, ...]:
  """The fields a resumed run must keep: those that change the model or the rows."""
  return tuple(f.name for f in _FIELDS.values() if f.compat)


def hparam_fields() -> list[Field]:
  """The fields shown in TensorBoard's HParams table."""
  return [f for f in _FIELDS.values() if f.hparam]
