"""Using an export: score new rows (`--mode=predict`), or measure it on labelled rows
(`--mode=evaluate`). Both read the table (CSV or Parquet) as training does, with the label
column optional when predicting, and stream it: each chunk of rows is read, scored through the
export and written (predict) or reduced to a score and a label per row (evaluate) before the
next is read, so memory does not grow with the file.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import numpy as np
import pandas as pd

from engine import evaluation, threshold
from engine.config import Config, ConfigError
from engine.export import ExportedModel
from engine.progress import format_duration
from input_pipeline import preprocessing, readers
from input_pipeline.errors import DataError

ID_COLUMNS = ("id", "ID", "Id", "transaction_id")
# Rows read, scored and written at a time: bounds the memory, whatever the file's length.
CHUNK_ROWS = 1 << 17
PROGRESS_SECONDS = 10.0


def _open(config: Config, model, labelled: bool):
  if not config.data_path:
    raise ConfigError("invalid --data_path=None: --mode=predict and --mode=evaluate need the "
                      "table to score")
  table = readers.open_table(config.data_path)
  if len(table.columns) < (2 if labelled else 1):
    raise DataError(f"{config.data_path} has {len(table.columns)} column(s); need a label and "
                    "at least one feature")
  missing = [c for c in model.raw_columns if c not in table.columns]
  if missing:
    raise DataError(f"missing feature column(s): {', '.join(missing)}")
  return table


def _chunks(table, model, extra: list[str]):
  """The rows in chunks, only the columns needed; numeric ones as numbers, the others (the
  categories, IDs and label) as the file writes them, as training read them."""
  wanted = list(dict.fromkeys([*model.raw_columns, *extra]))
  return _ahead(table.chunks(CHUNK_ROWS, numeric=model.numeric_columns, columns=wanted))


def _ahead(chunks):
  """The chunks, the next one read in a thread while this one is scored: the reading (pyarrow)
  and the scoring (TensorFlow) release the GIL, so the two overlap on two cores."""
  done = object()
  ready: queue.Queue = queue.Queue(maxsize=1)
  stop = threading.Event()

  def offer(item) -> bool:  # False once the consumer has stopped.
    while not stop.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for chunk in chunks:
        if not offer(chunk):
          return
      offer(done)
    except BaseException as e:  # noqa: BLE001 - raised again in the consumer.
      offer(e)

  thread = threading.Thread(target=produce, daemon=True, name="read-ahead")
  thread.start()
  try:
    while (item := ready.get()) is not done:
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    thread.join()


class _Progress:
  """A line every PROGRESS_SECONDS: rows scored, the rate and, when the total is known, ETA."""

  def __init__(self, total: int | None):
    self.total, self.rows, self.start = total, 0, time.perf_counter()
    self.last = self.start

  def add(self, rows: int) -> None:
    self.rows += rows
    now = time.perf_counter()
    if now - self.last < PROGRESS_SECONDS:
      return
    self.last = now
    rate = self.rows / max(now - self.start, 1e-9)
    eta = (f", ETA {format_duration((self.total - self.rows) / rate)}"
           if self.total and self.total > self.rows else "")
    logging.info("Scored %d%s rows, %.0f rows/s%s", self.rows,
                 f" of ~{self.total}" if self.total else "", rate, eta)


class _Writer:
  """The scores, chunk by chunk, into a hidden file beside `output`, renamed over it at the
  end: a failed run leaves the previous output as it was. Parquet for `*.parquet`, else CSV."""

  def __init__(self, output: str):
    self.output = output
    head, tail = os.path.split(output)
    self.tmp = os.path.join(head, f".{tail}.part")
    self.parquet = output.lower().endswith(".parquet")
    self._writer = self._schema = None

  def write(self, scores: pd.DataFrame) -> None:
    import pyarrow as pa
    table = pa.Table.from_pandas(scores, preserve_index=False)
    try:
      if self._writer is None:
        self._schema = table.schema  # Every chunk is written with the first one's types.
        self._writer = self._open(table.schema)
      self._writer.write_table(table.cast(self._schema))
    except (OSError, pa.ArrowException) as e:
      raise ConfigError(f"invalid --output={self.output}: {getattr(e, 'strerror', None) or e}"
                        ) from None

  def _open(self, schema):
    # pyarrow's writers: CSV floats in their shortest exact form, and no Python loop per row.
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq
    if self.parquet:
      return pq.ParquetWriter(self.tmp, schema)
    return pa_csv.CSVWriter(self.tmp, schema,
                            write_options=pa_csv.WriteOptions(quoting_style="needed",
                                                                     quoting_header="needed"))

  def close(self, keep: bool) -> None:
    if self._writer is not None:
      self._writer.close()
    if keep:
      os.replace(self.tmp, self.output)
    elif os.path.exists(self.tmp):
      os.remove(self.tmp)


def check_output(output: str) -> None:
  """Raises ConfigError unless `output` can be written as a file: its directory exists and it
  is not a directory itself. Run before scoring, so a typo costs no scoring pass."""
  directory = os.path.dirname(output)
  if directory and not os.path.exists(directory):
    raise ConfigError(f"invalid --output={output}: directory {directory} does not exist")
  if directory and not os.path.isdir(directory):
    raise ConfigError(f"invalid --output={output}: directory {directory} is not a directory")
  if os.path.isdir(output):
    raise ConfigError(f"invalid --output={output}: it is a directory; name a file")


def _id_columns(model, table, path: str) -> list[str]:
  ids = [c for c in model.id_columns if c in table.columns]
  if len(ids) < len(model.id_columns):
    logging.warning("ID column(s) %s of the training data are not in %s; numbering the rows",
                    ", ".join(c for c in model.id_columns if c not in ids), path)
  if not ids and not model.id_columns:
    ids = [c for c in ID_COLUMNS if c in table.columns and c not in model.raw_columns][:1]
  return ids


def predict(config: Config, export_dir: str, output: str) -> dict:
  """Scores every row of config.data_path with the export, chunk by chunk, into `output`.

  The output has one row per input row, in order: the run's ID columns (`--id_columns` at
  training; else a column named like an id if the input has one; else `row`, the 0-based row
  number), then `probability` and `decision` (1 if flagged at the export's threshold).

  Returns:
    {"rows": rows scored, "flagged": rows flagged, "output": output}.

  Raises:
    ConfigError: no --data_path or --output, or an --output that cannot be written.
    DataError: the table lacks a feature column or holds values training refuses (nothing
      is written then).
  """
  if not output:
    raise ConfigError("invalid --output=None: --mode=predict needs a file for the scores")
  check_output(output)
  model = ExportedModel(export_dir)
  table = _open(config, model, labelled=False)
  ids = _id_columns(model, table, config.data_path)
  writer, progress, flagged, done = _Writer(output), _Progress(table.rows_estimate()), 0, False
  try:
    for frame in _chunks(table, model, ids):
      probabilities, decisions = model.score(frame)
      scores = (frame[ids].reset_index(drop=True) if ids else
                pd.DataFrame({"row": frame.index.to_numpy(np.int64)}))
      scores["probability"] = probabilities
      scores["decision"] = decisions.astype(np.int64)
      writer.write(scores)
      flagged += int(decisions.sum())
      progress.add(len(frame))
    done = True
  finally:
    writer.close(keep=done)
  logging.info("Scored %d rows; %d flagged at threshold %.6g; wrote %s", progress.rows, flagged,
               model.threshold, output)
  return {"rows": progress.rows, "flagged": flagged, "output": output}


def evaluate(config: Config, export_dir: str) -> dict:
  """Metrics of the export on a labelled table: exact AUC/PR-AUC, and counts at 0.5 and at the
  export's threshold. Only a score and a label per row are kept.

  Returns:
    {"rows", "positives", "at_0.5": exact metrics, "threshold": {"value", ..., confusion}}.

  Raises:
    ConfigError: no --data_path.
    DataError: no label column, bad labels, missing features.
  """
  model = ExportedModel(export_dir)
  table = _open(config, model, labelled=True)
  label = model.info.get("label_column", config.label_column)
  if label not in table.columns:
    raise DataError(f"label column '{label}' not found in {config.data_path}; "
                    "--mode=evaluate needs labelled rows (use --mode=predict to score)")
  labels, scores, progress = [], [], _Progress(table.rows_estimate())
  for frame in _chunks(table, model, [label]):
    labels.append(preprocessing.parse_labels(frame[label], label).astype(np.int8))
    scores.append(model.score(frame)[0])
    progress.add(len(frame))
  labels, probabilities = np.concatenate(labels).astype(np.int64), np.concatenate(scores)
  at_half = evaluation.exact_metrics(labels, probabilities)
  th = dict(model.info["threshold"])
  th.update(threshold.confusion(labels, probabilities, model.threshold))
  print(evaluation.format_table({"at 0.5": at_half, f"at {model.threshold:.4g}": th}))
  return {"rows": int(len(labels)), "positives": int(labels.sum()), "at_0.5": at_half,
          "threshold": th}
