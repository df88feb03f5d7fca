"""The run's data: `open_data(config)`, and the in-memory splits read in a second process.

`open_data` turns the config into the `data.Data` the engine trains on: a prepared directory
(`prepared.PreparedData`), or the splits of a CSV in memory (`data.InMemoryData`). It lives here,
below the interface, so that `data.py` imports none of its implementations.

Importing TensorFlow and reading, validating, cleaning and splitting the credit-card CSV are
the two longest parts of a short run's start; neither needs the other, and both are mostly
single-threaded. A thread does not overlap them: both hold the GIL most of the time (the two
took as long side by side as one after the other). A process does. So main.py starts
`BackgroundLoad` before it imports TensorFlow, and the training loop takes the splits from it
(the arrays, pickled through a pipe: small next to either).

(BUILD.md, "End-to-end wall time", has the figures.)

The child runs exactly `load_splits`, the function the loop calls in-process otherwise: same
code, same result. Its log lines are collected and replayed here, in order, and its errors
(DataError above all) are raised here, where the in-process load would have raised them. If
the child cannot run at all (no process can be started, or it died), the load runs in-process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os

from input_pipeline import preprocessing, sources
from input_pipeline.data import Data, InMemoryData
from input_pipeline.errors import DataError


def load_splits(config) -> tuple[preprocessing.Splits, str]:
  """Reads, validates, cleans, splits and scales the data the config names.

  Returns:
    (the splits, a one-line description of the source: path, rows, columns).

  Raises:
    DataError: data that cannot be used.
  """
  frame, source = sources.load_frame(config)
  description = f"{source}, {len(frame)} rows, {len(frame.columns)} columns"
  return preprocessing.split_and_encode(frame, config), description


class _Collect(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.records: list[tuple[int, str]] = []

  def emit(self, record: logging.LogRecord) -> None:
    self.records.append((record.levelno, record.getMessage()))


def _child(config, conn) -> None:
  """The child's whole life: load_splits, then send (result or error, log records) and exit."""
  collect = _Collect()
  logging.getLogger().addHandler(collect)
  logging.getLogger().setLevel(logging.INFO)
  try:
    message = ("ok", load_splits(config), collect.records)
  except Exception as e:  # noqa: BLE001 - raised again in the parent, after the logs.
    message = ("error", e, collect.records)
  try:
    try:
      conn.send(message)
    except (BrokenPipeError, ConnectionResetError):
      raise
    except Exception as e:  # noqa: BLE001 - an error that does not pickle is sent as text.
      conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}"), collect.records))
  except (BrokenPipeError, ConnectionResetError):
    pass  # The parent is gone (killed, or stopped before it needed the data): nobody to tell.
  conn.close()


class BackgroundLoad:
  """`load_splits(config)` running in a child process; `result()` waits for it."""

  def __init__(self, config):
    self.config = config
    # spawn, not fork: a fresh interpreter is safe on every platform whatever this process
    # holds; its start-up (numpy and pandas) is hidden behind TensorFlow's longer import.
    context = multiprocessing.get_context("spawn")
    self._conn, child_conn = context.Pipe(duplex=False)
    self._process = context.Process(target=_child, args=(config, child_conn), daemon=True,
                                    name="background-data-load")
    self._process.start()
    child_conn.close()  # The child holds its end; EOF here then means the child is gone.

  def result(self) -> tuple[preprocessing.Splits, str]:
    """The child's `load_splits(config)`: its return value, or its exception raised here."""
    try:
      status, value, records = self._conn.recv()
    except (EOFError, OSError):
      self.close()
      logging.warning("The background data load ended without a result (exit code %s); "
                      "loading in this process", self._process.exitcode)
      return load_splits(self.config)
    self.close()
    for level, message in records:
      logging.log(level, "%s", message)
    if status == "error":
      raise value
    return value

  def close(self) -> None:
    """Ends the child (abandoning its load if it has not finished) and releases the pipe."""
    if self._process.is_alive():
      self._process.terminate()
    self._process.join()
    self._conn.close()


def start(config) -> BackgroundLoad | None:
  """Starts loading the config's in-memory splits in a child process, where that helps.

  None (load in-process later) for a prepared directory (streamed, nothing to preload), and
  for the credit-card set before its first download: fetching logs its progress as it goes,
  and the download dwarfs the import anyway.
  """
  if config.prepared_dir:
    return None
  if (not config.data_path and config.dataset == "creditcard" and
      not os.path.exists(sources.cached_creditcard_path())):
    return None
  try:
    return BackgroundLoad(config)
  except OSError as e:  # e.g. no process may be started here: load in-process instead.
    logging.warning("Cannot start a background data load (%s); loading in this process", e)
    return None


def open_data(config, preloaded=None) -> Data:
  """The data the config names: a prepared directory (`--prepared_dir`), or splits in memory.

  Args:
    config: the run's config.
    preloaded: optional; returns the in-memory (splits, description) in place of
      `load_splits(config)`, e.g. `BackgroundLoad(config).result`.

  Raises:
    DataError: data that cannot be used, or a batch larger than the training split.
  """
  if config.prepared_dir:
    from input_pipeline import prepared  # TensorFlow: not before main.py has imported it.
    data = prepared.PreparedData.open(config.prepared_dir, config.label_column)
  else:
    splits, description = preloaded() if preloaded else load_splits(config)
    data = InMemoryData(splits, description)
  logging.info("Data: %s", data.description)
  for name, c in data.counts().items():
    logging.info("  %-10s %7d rows, %4d positives (%.3f%%)", name, c["rows"], c["positives"],
                 100.0 * c["positives"] / max(1, c["rows"]))
  n_train = data.counts()["train"]["rows"]
  if config.batch_size > n_train:
    raise DataError(f"--batch_size={config.batch_size} is larger than the training split "
                    f"({n_train} rows)")
  return data
