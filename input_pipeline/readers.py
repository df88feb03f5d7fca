"""One reader per file type, used by every mode (training, prepare, predict, evaluate).

  CSV (or CSV.gz): every cell is read as the text the file holds (pyarrow's CSV reader, every
    column typed string, so no reader guesses a type block by block); a column becomes float64
    only when the caller asks for numbers and every cell of it parses as one, or an empty /
    NA-like cell (a gap). Otherwise it stays text, as written: `01234` stays `01234`.
  Parquet (a `.parquet` file, or a directory of them read in sorted path order): the types are
    the schema's (strings are text, integers and floats numbers, booleans booleans); dictionary-
    encoded columns are decoded to their values. Read in row-group batches.

Each reader gives the column names (duplicates refused: pandas would rename them `f1.1`), the
rows in chunks of pandas DataFrames for streaming, and the whole table.
"""

from __future__ import annotations

import abc
import collections
import gzip
import os
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from input_pipeline.errors import DataError

# Cells of a numeric column that are gaps, as pandas and pyarrow have always read them.
NUMERIC_GAPS = ("", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "#N/A",
                "None")
# Bytes of CSV per pyarrow read block: a streamed chunk never holds much more than this beyond
# the rows asked for.
CSV_BLOCK_BYTES = 1 << 20
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str) -> bool:
  """A directory, a `.parquet`/`.pq` name, or a file starting with Parquet's magic bytes."""
  if os.path.isdir(path) or path.lower().endswith(PARQUET_SUFFIXES):
    return True
  with open(path, "rb") as f:
    return f.read(4) == b"PAR1"


def _looks_binary(path: str) -> bool:
  with open(path, "rb") as f:
    head = f.read(8192)
  if head[:2] == b"\x1f\x8b":  # gzip: check the inflated head instead.
    try:
      with gzip.open(path, "rb") as g:
        head = g.read(8192)
    except (OSError, EOFError):
      return True
  return b"\x00" in head


def check_path(path: str) -> None:
  """Raises DataError unless `path` is a table file this module reads (checked cheaply: it
  exists, is not empty, and a CSV looks like text)."""
  if not os.path.exists(path):
    raise DataError(f"data file not found: {path}")
  try:
    if os.path.isdir(path):
      if not parquet_files(path):
        raise DataError(f"--data_path={path} is a directory without .parquet files")
      return
    if os.path.getsize(path) == 0:
      raise DataError(f"{path} is empty")
    if not is_parquet(path) and _looks_binary(path):
      raise DataError(f"{path} is not a CSV file (it holds binary data); name a Parquet file "
                      "*.parquet")
  except OSError as e:
    raise DataError(f"{path} cannot be read: {e.strerror}") from None


def parquet_files(directory: str) -> list[str]:
  """The Parquet files under `directory`, in sorted path order (hidden and `_` files skipped)."""
  found = []
  for root, dirs, files in os.walk(directory):
    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
    found += [os.path.join(root, f) for f in files
              if f.lower().endswith(PARQUET_SUFFIXES) and not f.startswith((".", "_"))]
  return sorted(found)


def check_unique(names: Sequence[str], path: str) -> None:
  """DataError naming every header that appears more than once."""
  repeated = [n for n, k in collections.Counter(names).items() if k > 1]
  if repeated:
    raise DataError(f"{path}: duplicate column name(s) in the header: "
                    f"{', '.join(map(repr, repeated))}; every column needs its own name")


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def to_numbers(column: pa.Array) -> pa.Array | None:
  """A text column as float64 (gaps null), or None if a cell is neither a number nor a gap."""
  try:  # Without gaps or padding, the plain cast is the same and faster.
    return pc.cast(column, pa.float64())
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    pass
  text = pc.utf8_trim_whitespace(column)
  text = pc.if_else(pc.is_in(text, value_set=pa.array(NUMERIC_GAPS)),
                    pa.scalar(None, text.type), text)
  try:
    return pc.cast(text, pa.float64())
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    return None


def _is_text(kind: pa.DataType) -> bool:
  return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def to_frame(table: pa.Table, *, numeric, infer_text: bool) -> pd.DataFrame:
  """An arrow table as pandas, a column's type decided once for the whole table.

  `numeric`: the columns to convert to float64 where every cell parses (a column with text
  stays text, for the caller to name the bad cells); None: every text column that parses, if
  `infer_text` (CSV), else none (Parquet: its strings are text).
  """
  arrays = {}
  for name, column in zip(table.column_names, table.columns):
    if pa.types.is_dictionary(column.type):
      column = column.cast(column.type.value_type)
    if pa.types.is_decimal(column.type):
      column = column.cast(pa.float64())
    wanted = name in numeric if numeric is not None else infer_text
    if _is_text(column.type) and wanted:
      numbers = to_numbers(column)
      column = column if numbers is None else numbers
    arrays[name] = column
  return pa.table(arrays).to_pandas()


class Table(abc.ABC):
  """A table file: its column names, its rows in chunks, or all of them."""

  path: str
  columns: list[str]
  infer_text: bool = False

  def rows_estimate(self) -> int | None:
    """The number of data rows, or an estimate of it, for a progress line; None if unknown."""
    return None

  @abc.abstractmethod
  def _batches(self, rows: int, columns) -> Iterator[pa.Table]:
    """Arrow tables of about `rows` rows (at least one row each), in file order."""

  def _read(self, columns) -> pa.Table:
    return pa.concat_tables(list(self._batches(1 << 20, columns)))

  def _checked_columns(self, columns) -> list[str] | None:
    if columns is None:
      return None
    missing = [c for c in columns if c not in self.columns]
    if missing:
      raise DataError(f"{self.path} lacks the column(s) {', '.join(missing)}")
    return [c for c in self.columns if c in set(columns)]

  def chunks(self, rows: int, *, numeric: Sequence[str] | None = None,
             columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """The rows in DataFrames of exactly `rows` rows (the last may be shorter), in file order;
    see `to_frame` for `numeric`. The index is each row's 0-based position in the file.

    Raises:
      DataError: the file cannot be read, or has no data rows.
    """
    wanted = self._checked_columns(columns)
    numeric = None if numeric is None else set(numeric)
    start, pending, held = 0, [], 0
    for batch in self._batches(rows, wanted):
      pending.append(batch)
      held += batch.num_rows
      while held >= rows:
        table = pa.concat_tables(pending)
        yield self._frame(table.slice(0, rows), start, numeric)
        start, pending, held = start + rows, [table.slice(rows)], held - rows
    if held:
      yield self._frame(pa.concat_tables(pending), start, numeric)
    elif start == 0:
      raise DataError(f"{self.path} has a header but no data rows")

  def read(self, *, numeric: Sequence[str] | None = None,
           columns: Sequence[str] | None = None) -> pd.DataFrame:
    """All rows in one DataFrame; see `chunks`."""
    table = self._read(self._checked_columns(columns))
    if table.num_rows == 0:
      raise DataError(f"{self.path} has a header but no data rows")
    return self._frame(table, 0, None if numeric is None else set(numeric))

  def _frame(self, table: pa.Table, start: int, numeric) -> pd.DataFrame:
    frame = to_frame(table, numeric=numeric, infer_text=self.infer_text)
    return frame.set_axis(np.arange(start, start + len(frame)), axis=0)


class CsvTable(Table):
  """A CSV or CSV.gz file, every column read as text."""

  infer_text = True

  def __init__(self, path: str):
    self.path = path
    try:
      with pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 16)) as r:
        self.columns = [str(n) for n in r.schema.names]
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as e:
      raise self._error(e) from None
    check_unique(self.columns, path)

  def rows_estimate(self):
    """From the length of the first rows (a compressed file: unknown)."""
    with open(self.path, "rb") as f:
      head = f.read(1 << 16)
    if head[:2] == b"\x1f\x8b" or head.count(b"\n") < 2:
      return None
    header = head.index(b"\n") + 1
    body = head[header:head.rindex(b"\n") + 1]
    return int((os.path.getsize(self.path) - header) / (len(body) / body.count(b"\n")))

  def _error(self, e: Exception) -> DataError:
    if "Empty CSV file" in str(e):
      return DataError(f"{self.path} is empty")
    return DataError(f"{self.path} is not a readable CSV file: {_first_line(e)}")

  def _options(self, columns, block_bytes: int):
    convert = pa_csv.ConvertOptions(column_types={c: pa.string() for c in self.columns},
                                    strings_can_be_null=False,
                                    include_columns=columns or self.columns)
    return dict(read_options=pa_csv.ReadOptions(block_size=block_bytes),
                convert_options=convert)

  def _batches(self, rows, columns):
    try:
      with pa_csv.open_csv(self.path, **self._options(columns, CSV_BLOCK_BYTES)) as reader:
        for batch in reader:
          if batch.num_rows:
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as e:
      raise self._error(e) from None

  def _read(self, columns):
    try:  # In one call: pyarrow parses the blocks in parallel.
      return pa_csv.read_csv(self.path, **self._options(columns, CSV_BLOCK_BYTES))
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as e:
      raise self._error(e) from None


class ParquetTable(Table):
  """A Parquet file, or a directory of Parquet files that share one schema."""

  def __init__(self, path: str):
    self.path = path
    self.files = parquet_files(path) if os.path.isdir(path) else [path]
    schema = None
    for f in self.files:
      try:
        this = pq.read_schema(f)
      except (pa.ArrowException, OSError) as e:
        raise DataError(f"{f} is not a readable Parquet file: {_first_line(e)}") from None
      if schema is None:
        schema, first = this, f
      elif not this.remove_metadata().equals(schema.remove_metadata()):
        raise DataError(f"{f} has another schema than {first} ({this.names} with types "
                        f"{[str(t) for t in this.types]}); every file of {path} needs one schema")
    self.schema = schema
    self.columns = list(schema.names)
    check_unique(self.columns, path)

  def rows_estimate(self):
    return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

  def _batches(self, rows, columns):
    for f in self.files:
      try:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=rows, columns=columns):
          if batch.num_rows:
            yield pa.Table.from_batches([batch])
      except (pa.ArrowException, OSError) as e:
        raise DataError(f"{f} is not a readable Parquet file: {_first_line(e)}") from None


def open_table(path: str) -> Table:
  """The reader for `path`: Parquet for a directory or a Parquet file, else CSV.

  Raises:
    DataError: missing, empty, unreadable, duplicate headers, or Parquet files that disagree.
  """
  check_path(path)
  return ParquetTable(path) if is_parquet(path) else CsvTable(path)


def read_table(path: str, text_columns: Sequence[str] = (), labelled: bool = True) -> pd.DataFrame:
  """The whole table: text columns (CSV) that hold only numbers become float64, except
  `text_columns`, kept as written. A `labelled` table needs a label column besides its features.
  """
  table = open_table(path)
  if len(table.columns) < (2 if labelled else 1):
    raise DataError(f"{path} has {len(table.columns)} column(s); need a label and at least "
                    "one feature")
  numeric = [c for c in table.columns if c not in set(text_columns)]
  return table.read(numeric=numeric if table.infer_text else None)
