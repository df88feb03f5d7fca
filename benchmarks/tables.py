"""The quality benchmark's tables, and the one split every contender of a run uses.

A table is a CSV, the main.py flags that read it (label, ID, time and categorical columns, the
split), and for a generated table each row's true fraud probability, kept out of the CSV so the
engine cannot train on it. `split` computes a seed's train/validation/test rows with the
engine's own code (input_pipeline: the frame main.py reads, its column roles, its row checks,
its split), so the peers and the oracle are scored on exactly the engine's test rows.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("creditcard", "creditcard_time", "transactions", "merchants")
GENERATED_ROWS = 250_000


@dataclasses.dataclass(frozen=True)
class Table:
  """A table as main.py reads it.

  `fields` are engine.Config fields (and main.py flags of the same names); `true_probability`
  is aligned with the CSV's rows, None for a real table; `ceiling` gives a split's test rows
  the best probability learnable from its other rows, where the table has one.
  """

  name: str
  path: str
  fields: dict
  true_probability: np.ndarray | None = None
  ceiling: Callable[["Split"], np.ndarray] | None = None

  def flags(self) -> list[str]:
    """main.py flags for `fields`: tuples comma-joined."""
    out = [f"--data_path={self.path}"]
    for key, value in self.fields.items():
      value = ",".join(value) if isinstance(value, tuple) else value
      out.append(f"--{key}={value}")
    return out

  @property
  def time_split(self) -> bool:
    return self.fields.get("split") == "time"


def creditcard_path(path: str | None) -> str:
  """`path`, or the verified credit-card CSV main.py would fetch (from its cache if there)."""
  if path:
    return path
  from input_pipeline import sources
  return sources.fetch_creditcard()


def make(name: str, workdir: str, *, creditcard: str | None = None,
         rows: int = GENERATED_ROWS, seed: int = 0) -> Table:
  """The table `name` (one of NAMES); generated tables are written as CSV into `workdir`.

  Both credit-card tables name `Time` as the time column, as main.py does by default on that
  set: its hour of day and day of week become features. A generated table's `ceiling`, where
  there is one, is benchmarks/ceiling.py's: the best probability learnable from a split's rows.

  Raises:
    ValueError: an unknown name.
  """
  if name in ("creditcard", "creditcard_time"):
    fields = {"time_column": "Time"}
    if name == "creditcard_time":
      fields["split"] = "time"
    return Table(name, creditcard_path(creditcard), fields)
  if name not in NAMES:
    raise ValueError(f"unknown table {name!r}; the tables are {', '.join(NAMES)}")
  from tests import transactions as generators
  frame = generators.GENERATORS[name](rows, seed, true_probability=True)
  probability = frame.pop(generators.TRUE_PROBABILITY).to_numpy()
  ceiling_of = None
  if generators.TRUE_MERCHANT_RISK in frame:
    from benchmarks import ceiling
    risk = frame.pop(generators.TRUE_MERCHANT_RISK).to_numpy()
    ceiling_of = ceiling.merchants_ceiling(frame, probability, risk)
  path = os.path.join(workdir, f"{name}.csv")
  frame.to_csv(path, index=False)
  fields = {"label_column": "is_fraud", "id_columns": ("transaction_id",),
            "time_column": "timestamp" if name == "transactions" else "event_time",
            "split": "time"}
  if name == "transactions":
    fields["categorical_columns"] = ("mcc",)  # An integer-coded category (README).
  return Table(name, path, fields, probability, ceiling_of)


@dataclasses.dataclass
class Split:
  """One seed's split of a table, as the engine makes it.

  `positions` are the file's 0-based data rows the engine keeps (all of them unless a row
  check drops some), `split` their split (0 train, 1 validation, 2 test), `rows` their values
  by role (input_pipeline.columns.Rows: numeric, categorical strings, labels, times).
  """

  positions: np.ndarray
  split: np.ndarray
  rows: object
  roles: object

  def test_positions(self) -> np.ndarray:
    return self.positions[self.split == 2]

  def labels(self, which: int) -> np.ndarray:
    return self.rows.labels[self.split == which]


def read(table: Table, seed: int = 0) -> pd.DataFrame:
  """The frame main.py reads for `table` (the same reader, the same text columns)."""
  from input_pipeline import sources
  return sources.load_frame(config(table, seed))[0]


def config(table: Table, seed: int):
  from engine.config import Config
  return Config(seed=seed, data_path=table.path, **table.fields)


def split(table: Table, seed: int, frame: pd.DataFrame | None = None) -> Split:
  """The engine's split of `table` for `seed`: input_pipeline.preprocessing.prepare's steps up
  to the split, on the frame main.py reads (`frame`, if given, must be `read(table)`)."""
  from input_pipeline import columns, preprocessing
  cfg = config(table, seed)
  frame = read(table, seed) if frame is None else frame
  frame = frame.set_axis(np.arange(len(frame)), axis=0)
  roles = columns.assign_roles(frame, cfg)
  rows = columns.read_rows(frame, roles, drop_invalid_rows=cfg.drop_invalid_rows)
  return Split(positions=rows.index, split=preprocessing.split_rows(rows, cfg), rows=rows,
               roles=roles)


def write_test_rows(frame: pd.DataFrame, split_: Split, path: str) -> None:
  """The test rows of `frame`, in file order, as a CSV for main.py --mode=predict."""
  frame.iloc[split_.test_positions()].to_csv(path, index=False)
