"""The process around a run: console logging, quiet start-up, and errors as exit codes.

main.py reads the flags and dispatches; everything else a command-line process needs lives here,
so no library module prints or exits on its own.
"""

from __future__ import annotations

import contextlib
import gc
import logging as std_logging
import os
import sys

from absl import app, logging

EXIT_BAD_INPUT = 2
EXIT_NUMERICAL = 3
EXIT_WRITE = 4  # A file of the run could not be written: disk full, read-only, quota.


def exit_codes() -> dict[type, int]:
  """The one table from error type to exit code (imported late: TensorFlow is not needed)."""
  from engine.config import ConfigError
  from engine.write_guard import WriteError
  from input_pipeline.errors import DataError
  codes = {ConfigError: EXIT_BAD_INPUT, DataError: EXIT_BAD_INPUT, WriteError: EXIT_WRITE}
  if "engine.loop" in sys.modules:
    codes[sys.modules["engine.loop"].NumericalError] = EXIT_NUMERICAL
  return codes


class ConsoleFormatter(std_logging.Formatter):
  """`12:34:56 message`, and `warning: ` before warnings and errors.

  absl's prefix (level, date, microseconds, thread id, file:line) takes a good part of every
  line; the console is read in a 100-column terminal, and the file:line is for developers.
  """

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record):
    line = super().format(record)
    if record.levelno >= std_logging.WARNING:
      stamp, _, message = line.partition(" ")
      line = f"{stamp} {record.levelname.lower()}: {message}"
    return line


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
  """One line on stderr, then exit: for the user's mistakes, never a traceback."""
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(code)


@contextlib.contextmanager
def errors_as_exit_codes():
  """Turns the errors of `exit_codes()` raised inside into one line and their exit code."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 - re-raised unless it is one of ours
    for error_type, code in exit_codes().items():
      if isinstance(e, error_type):
        fail(str(e), code)
    raise


def log_to_console() -> None:
  """Logs go to stdout with ConsoleFormatter; stderr carries only errors, so a failed run's
  stderr is its reason."""
  logging.get_absl_handler().python_handler.stream = sys.stdout
  logging.get_absl_handler().setFormatter(ConsoleFormatter())


def quiet_library_logs() -> None:
  """Drops the INFO lines TensorFlow's writers log per save, and the retracing warnings that
  `--strategy=all`'s one Trainer per strategy triggers by design."""
  quiet = ("functional_saver", "signature_serialization", "builder_impl", "fingerprinting_utils")
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno > logging.converter.STANDARD_INFO or r.module not in quiet)
  logging.get_absl_handler().addFilter(
      lambda r: "triggered tf.function retracing" not in r.getMessage())


def hold_garbage_collection() -> None:
  """No collection while the imports run: importing TensorFlow and pandas creates a great many
  objects, none of them garbage, and the collector would scan the growing heap again and again.
  `import_tensorflow_quietly` freezes them out of every later collection."""
  gc.disable()


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow and lists devices with the C++ start-up lines held back.

  Those lines (oneDNN notices, "could not find cuda drivers", a failed cuInit on machines without
  a GPU) bypass TF_CPP_MIN_LOG_LEVEL and would bury the one line a failed run prints. They are
  replayed if the import itself fails. Then the imported objects are frozen out of garbage
  collection, which starts again.
  """
  import tempfile
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with tempfile.TemporaryFile() as held:
      os.dup2(held.fileno(), 2)
      try:
        import tensorflow as tf
        tf.config.list_physical_devices()
      except BaseException:
        os.dup2(saved, 2)
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))
        raise
      finally:
        os.dup2(saved, 2)
        os.close(saved)
  finally:
    gc.freeze()
    gc.enable()


def run(main, flags_parser) -> None:
  """`app.run(main)`, then an immediate exit with its status.

  Once main has returned, every file is written and closed (checkpoints, summaries, results,
  export). What is left is the interpreter's teardown of TensorFlow (its thread pools and
  modules), for nothing. So the logs and streams are flushed and the process ends with
  `os._exit`. An uncaught exception still ends the normal way, with its traceback.
  """
  try:
    app.run(main, flags_parser=flags_parser)
    code = 0
  except SystemExit as e:
    code = e.code
  if code is None:
    code = 0
  elif not isinstance(code, int):  # sys.exit("message"): Python prints it and exits 1.
    sys.stderr.write(f"{code}\n")
    code = 1
  std_logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)
