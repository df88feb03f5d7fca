"""What each column of a table is, and its rows checked and converted by role.

Roles:
  label        the 0/1 target (`--label_column`);
  id           kept out of the model, copied into predict output (`--id_columns`);
  time         orders the rows for `--split=time`; not a feature (`--time_column`);
  categorical  text columns, booleans, and integer-coded ones named by
               `--categorical_columns`; values as the file writes them ("01234" stays that),
               booleans spelled one way ("true"/"false", whatever the file's case);
  numeric      every other column: numbers, with empty (or NA-like) cells as gaps.

The file's cells arrive as input_pipeline/readers.py reads them (CSV: text, a column turned
into numbers only if every cell of it parses). `assign_roles` decides the roles once, on the
whole frame in memory or on the first chunk of a file read in chunks (`--mode=prepare`);
`read_rows` then converts every frame or chunk the same way, and serving converts a role's
column with the same functions, so every mode sees the same values.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from input_pipeline import readers, sources
from input_pipeline.errors import DataError

# Larger finite values are refused: their squares (about 1e200 and up, summed over the rows)
# overflow float64 in the scaler's statistics, and the run would train on NaN.
MAX_ABS_FEATURE = 1e100
# A text column is an identifier, not a category, when at least this share of its non-empty
# cells are distinct (and it has enough of them for the share to mean something).
ID_LIKE_SHARE = 0.9
ID_LIKE_MIN_ROWS = 50
# An object column is numeric with a few bad cells, not a category, when at least this share of
# its non-empty cells parse as numbers.
NUMERIC_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Roles:
  """Column names by role, in the file's column order."""

  label: str
  numeric: tuple[str, ...]
  categorical: tuple[str, ...]
  ids: tuple[str, ...] = ()
  time: str | None = None


@dataclasses.dataclass
class Rows:
  """The usable rows of a frame, converted by role.

  `index` holds each row's position in the file (0-based data rows), `numeric` the numeric
  columns as float64 with NaN for gaps, `categorical` each categorical column as canonical
  strings ("" for a gap), `times` seconds (float64) when there is a time column.
  """

  index: np.ndarray
  numeric: np.ndarray
  categorical: list[np.ndarray]
  labels: np.ndarray
  times: np.ndarray | None


def _shown_columns(frame: pd.DataFrame) -> str:
  return ", ".join(map(str, frame.columns[:12])) + (" ..." if len(frame.columns) > 12 else "")


def _missing(column: pd.Series) -> np.ndarray:
  """Empty cells: null (Parquet, pandas) or the empty string (CSV text)."""
  missing = column.isna().to_numpy()
  if not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
    missing = missing | (column.astype(str) == "").to_numpy()
  return missing


def category_strings(column: pd.Series) -> np.ndarray:
  """A column's cells as the strings that name categories; "" for an empty cell.

  Text is taken as written ("01234" stays "01234"), except that booleans have one spelling,
  whatever the file's: `true`/`True`/`TRUE` (and a boolean column's True) are all "true".
  Numbers (typed columns: Parquet, a frame passed in) are written without a fraction when they
  are whole, so an integer code reads the same with or without a gap in its column: 5411 and
  5411.0 are both "5411".
  """
  missing = _missing(column)
  if pd.api.types.is_bool_dtype(column) or _holds_bools(column):
    out = np.where(column.fillna(False).astype(bool).to_numpy(), "true", "false").astype(object)
  elif not pd.api.types.is_numeric_dtype(column):
    text = column.astype(str)
    lower = text.str.lower()
    out = np.where(lower.isin(("true", "false")), lower, text).astype(object)
  else:
    values = column.to_numpy(np.float64)
    whole = np.isfinite(values) & (values == np.round(values))
    out = np.where(whole, np.char.mod("%d", np.where(whole, values, 0).astype(np.int64)),
                   column.astype(str).to_numpy()).astype(object)
  out[missing] = ""
  return out


def _holds_bools(column: pd.Series) -> bool:
  """A bool column with gaps: pandas types it object, with True/False cells."""
  if column.dtype != object:
    return False
  present = column.dropna()
  return len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present.head(1000))


def text_numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
  """A text column read as numbers: (float64 values, NaN for gaps and text; mask of the cells
  that hold text, neither a number nor a gap). Gaps are readers.NUMERIC_GAPS."""
  text = column.astype(str).str.strip()
  gaps = column.isna().to_numpy() | text.isin(readers.NUMERIC_GAPS).to_numpy()
  values = pd.to_numeric(text.where(~gaps), errors="coerce").to_numpy(np.float64)
  return values, np.isnan(values) & ~gaps


def _numeric_share(column: pd.Series) -> float:
  values, text = text_numbers(column)
  present = int((~np.isnan(values)).sum() + text.sum())
  return float((~np.isnan(values)).sum() / present) if present else 0.0


def assign_roles(frame: pd.DataFrame, config) -> Roles:
  """The role of every column of `frame`, from the config and the column's values.

  Raises:
    DataError: a named column is missing, or a text column looks like an identifier.
  """
  if config.label_column not in frame.columns:
    raise DataError(f"label column '{config.label_column}' not found; the columns are: "
                    f"{_shown_columns(frame)}")
  named = [("--id_columns", c) for c in config.id_columns]
  named += [("--categorical_columns", c) for c in config.categorical_columns]
  named += [("--time_column", config.time_column)] if config.time_column else []
  for flag, column in named:
    if column not in frame.columns:
      raise DataError(f"column '{column}' named by {flag} not found; the columns are: "
                      f"{_shown_columns(frame)}")
  time = config.time_column or _creditcard_time(frame, config)
  taken = {config.label_column, time, *config.id_columns}
  numeric, categorical = [], []
  for name in map(str, frame.columns):
    if name in taken:
      continue
    column = frame[name]
    if (name in config.categorical_columns or pd.api.types.is_bool_dtype(column) or
        _holds_bools(column)):
      categorical.append(name)
    elif pd.api.types.is_numeric_dtype(column) or _numeric_share(column) >= NUMERIC_SHARE:
      numeric.append(name)  # Cells that do not parse are refused (or dropped) by read_rows.
    else:
      present = column[~_missing(column)]
      distinct = present.nunique()
      if len(present) >= ID_LIKE_MIN_ROWS and distinct >= ID_LIKE_SHARE * len(present):
        raise DataError(f"column '{name}' holds {distinct} distinct strings in {len(present)} "
                        "non-empty rows: an identifier, not a category; pass "
                        f"--id_columns={name} (or --time_column={name} if it is a timestamp)")
      categorical.append(name)
  if not numeric and not categorical:
    raise DataError("no feature columns are left once the label, ID and time columns are set "
                    "aside")
  return Roles(label=config.label_column, numeric=tuple(numeric),
               categorical=tuple(categorical), ids=tuple(config.id_columns), time=time)


def _creditcard_time(frame: pd.DataFrame, config) -> str | None:
  """`Time` on the credit-card set itself (a table of exactly its columns), unless the config
  gives `Time` another role or turns the cleaning or the time features off: its seconds then
  give the hour of day as a feature (fraud there follows the clock) instead of being dropped."""
  given = {*config.categorical_columns, *config.id_columns}
  if (config.creditcard_cleaning == "off" or not config.time_features or "Time" in given or
      config.label_column != "Class" or
      not sources.is_creditcard_table(frame.columns)):
    return None
  return "Time"


_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


def parse_labels(column: pd.Series, name: str) -> np.ndarray:
  """0/1 labels (or true/false strings) to int64. Raises DataError on anything else."""
  empty = _missing(column)
  if empty.any():
    raise DataError(f"label column '{name}' has {int(empty.sum())} empty value(s)")
  if column.dtype == bool:
    return column.to_numpy().astype(np.int64)
  if pd.api.types.is_numeric_dtype(column):
    values = column.to_numpy()
    bad = ~np.isin(values, (0, 1))
    if bad.any():
      shown = sorted(set(np.asarray(values[bad]).tolist()))[:5]
      raise DataError(f"label column '{name}' must hold 0/1; found {int(bad.sum())} row(s) "
                      f"with other values, e.g. {shown}")
    return values.astype(np.int64)
  text = column.astype(str).str.strip().str.lower()
  bad = ~text.isin(_TRUE | _FALSE)
  if bad.any():
    shown = sorted(set(column[bad].astype(str)))[:5]
    raise DataError(f"label column '{name}' must hold 0/1 or true/false; found "
                    f"{int(bad.sum())} row(s) with other values, e.g. {shown}")
  return text.isin(_TRUE).to_numpy().astype(np.int64)


def parse_times(column: pd.Series, name: str) -> np.ndarray:
  """Seconds (float64) of a time column: numbers as they are, or date-time strings.

  Raises:
    DataError: an empty or unparseable cell (a row with no time cannot be ordered).
  """
  numbers, text = (None, None)
  if not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_datetime64_any_dtype(column):
    numbers, text = text_numbers(column)  # Text of numbers: seconds, as a numeric column.
  if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
    seconds = column.to_numpy(np.float64)
    bad = ~np.isfinite(seconds)
  elif numbers is not None and not text.any() and np.isfinite(numbers).any():
    seconds, bad = numbers, ~np.isfinite(numbers)
  else:
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    seconds = np.zeros(len(column))
    if (~bad).any():
      # In one unit: pandas picks microseconds, or nanoseconds if any cell has them.
      ns = parsed[~bad].dt.as_unit("ns").astype("int64").to_numpy()
      seconds[~bad] = ns / 1e9
  if bad.any():
    example = column[bad].iloc[0]
    raise DataError(f"time column '{name}' has {int(bad.sum())} empty or unparseable value(s), "
                    f"e.g. {str(example)!r} in data row {column.index[bad][0]} (0-based)")
  return seconds


def numeric_values(frame: pd.DataFrame, names: tuple[str, ...]):
  """(float64 values with NaN gaps, mask of cells that are present but not numbers)."""
  values = np.empty((len(frame), len(names)), np.float64)
  text = np.zeros(values.shape, bool)
  for j, name in enumerate(names):
    column = frame[name]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
      values[:, j] = column.to_numpy(np.float64)
    else:
      values[:, j], text[:, j] = text_numbers(column)
  return values, text


def served_values(frame: pd.DataFrame, names, nonnegative=()) -> np.ndarray:
  """The numeric columns of rows to score, refused as training refuses them.

  Raises:
    DataError: naming the column and the first bad row (the frame's index: the file row):
      text in a numeric column, Inf, a value beyond ±MAX_ABS_FEATURE, or a negative value in
      a `nonnegative` column (the credit-card cleaning's Amount, whose log it takes).
  """
  values, text = numeric_values(frame, tuple(names))
  with np.errstate(invalid="ignore"):
    checks = ((text, "was numeric in training but holds text here, e.g. {cell!r}"),
              (np.isinf(values), "holds Inf in {n} row(s), e.g. {cell!r}"),
              (np.isfinite(values) & (np.abs(values) > MAX_ABS_FEATURE),
               f"holds {{n}} value(s) beyond ±{MAX_ABS_FEATURE:g}, which training refuses, e.g. "
               "{cell!r}"),
              (np.isin(np.asarray(names), list(nonnegative))[None, :] & (values < 0),
               "holds {n} negative value(s), e.g. {cell!r}: the credit-card cleaning takes "
               "log(Amount + 0.001), and training refuses them"))
  for bad, message in checks:
    if bad.any():
      j = int(np.flatnonzero(bad.any(axis=0))[0])
      i = int(np.flatnonzero(bad[:, j])[0])
      cell = str(frame[names[j]].iloc[i])
      raise DataError(f"column '{names[j]}' " + message.format(n=int(bad[:, j].sum()), cell=cell)
                      + f" in data row {frame.index[i]} (0-based)")
  return values


def read_rows(frame: pd.DataFrame, roles: Roles, *, drop_invalid_rows: bool,
              require_both_classes: bool = True) -> Rows:
  """Converts `frame` by role; refuses (or drops) rows that cannot be used.

  Empty numeric cells are gaps (imputed later); text in a numeric column, Inf, and values beyond
  ±MAX_ABS_FEATURE are invalid: refused, or with `drop_invalid_rows` dropped and counted.
  `require_both_classes=False` is for one chunk of a file read in chunks, which may hold a
  single class; the caller checks the whole file's counts.

  Raises:
    DataError: a missing column, invalid cells, bad labels or times, or a single class.
  """
  needed = [roles.label, *roles.numeric, *roles.categorical, *roles.ids]
  needed += [roles.time] if roles.time else []
  missing = [c for c in needed if c not in frame.columns]
  if missing:
    raise DataError(f"missing column(s): {', '.join(missing)}")
  values, text = numeric_values(frame, roles.numeric)
  with np.errstate(invalid="ignore"):
    infinite = np.isinf(values)
    extreme = np.isfinite(values) & (np.abs(values) > MAX_ABS_FEATURE)
  invalid = text | infinite | extreme
  bad_rows = invalid.any(axis=1)
  if bad_rows.any():
    if not drop_invalid_rows:
      i, j = np.argwhere(invalid)[0]  # The first in file order.
      name, row = roles.numeric[j], frame.index[i]
      if text[i, j]:
        raise DataError(f"feature column '{name}' holds {int(text[:, j].sum())} value(s) that "
                        f"are not numbers, e.g. {str(frame[name].iloc[i])!r} in data row {row} "
                        f"(0-based); fix the data, pass --drop_invalid_rows, or "
                        f"--categorical_columns={name} if it is a category")
      if infinite[i, j]:
        raise DataError(f"{int(infinite.any(axis=1).sum())} row(s) have Inf features, e.g. "
                        f"column '{name}' in data row {row} (0-based); fix the data or pass "
                        "--drop_invalid_rows")
      raise DataError(f"feature column '{name}' holds {float(values[i, j])!r} in data row {row} "
                      f"(0-based): finite, but beyond ±{MAX_ABS_FEATURE:g} it overflows the "
                      "scaling statistics; fix the data or pass --drop_invalid_rows")
    logging.warning("Dropping %d row(s) with invalid features (%d text in numeric columns, %d "
                    "Inf, %d finite beyond ±%g)", int(bad_rows.sum()), int(text.sum()),
                    int(infinite.sum()), int(extreme.sum()), MAX_ABS_FEATURE)
    frame, values = frame[~bad_rows], values[~bad_rows]
  labels = parse_labels(frame[roles.label], roles.label)
  n_pos = int(labels.sum())
  if require_both_classes and (n_pos == 0 or n_pos == len(labels)):
    raise DataError(f"label column '{roles.label}' holds only class {1 if n_pos else 0} "
                    f"({len(labels)} rows); need both classes")
  return Rows(index=frame.index.to_numpy(), numeric=values,
              categorical=[category_strings(frame[c]) for c in roles.categorical],
              labels=labels,
              times=parse_times(frame[roles.time], roles.time) if roles.time else None)
