"""Using an export: score new rows (`--mode=predict`), or measure it on labelled rows
(`--mode=evaluate`). Both read the table (CSV or Parquet) as training does, with the label column optional when
predicting.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from engine import evaluation, threshold
from engine.config import Config, ConfigError
from engine.export import ExportedModel
from input_pipeline import preprocessing, readers
from input_pipeline.errors import DataError

ID_COLUMNS = ("id", "ID", "Id", "transaction_id")


def _read(config: Config, model: ExportedModel, labelled: bool) -> pd.DataFrame:
  # Only the numeric columns as numbers; categories, IDs and the label as the file writes
  # them, as training read them ("01234" stays that).
  table = readers.open_table(config.data_path)
  if len(table.columns) < (2 if labelled else 1):
    raise DataError(f"{config.data_path} has {len(table.columns)} column(s); need a label and "
                    "at least one feature")
  return table.read(numeric=model.numeric_columns)


def _check_data_path(config: Config) -> None:
  if not config.data_path:
    raise ConfigError("invalid --data_path=None: --mode=predict and --mode=evaluate need the "
                      "CSV to score")


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


def predict(config: Config, export_dir: str, output: str) -> pd.DataFrame:
  """Scores every row of config.data_path with the export; writes and returns the scores.

  The output has one row per input row, in order: the run's ID columns (`--id_columns` at
  training; else a column named like an id if the input has one; else `row`, the 0-based row
  number), then `probability` and `decision` (1 if flagged at the export's threshold).

  Raises:
    ConfigError: no --data_path or --output, or an --output that cannot be written.
    DataError: the CSV lacks a feature column or holds unusable values.
  """
  if not output:
    raise ConfigError("invalid --output=None: --mode=predict needs a CSV path for the scores")
  check_output(output)
  _check_data_path(config)
  model = ExportedModel(export_dir)
  frame = _read(config, model, labelled=False)
  probabilities, decisions = model.score(frame)
  ids = [c for c in model.id_columns if c in frame.columns]
  if len(ids) < len(model.id_columns):
    logging.warning("ID column(s) %s of the training data are not in %s; numbering the rows",
                    ", ".join(c for c in model.id_columns if c not in ids), config.data_path)
  if not ids and not model.id_columns:
    ids = [c for c in ID_COLUMNS if c in frame.columns and c not in model.raw_columns][:1]
  scores = frame[ids].copy() if ids else pd.DataFrame({"row": np.arange(len(frame))})
  scores["probability"] = probabilities
  scores["decision"] = decisions.astype(np.int64)
  try:
    if output.lower().endswith(".parquet"):
      scores.to_parquet(output, index=False)
    else:
      scores.to_csv(output, index=False, float_format="%.10g")
  except OSError as e:
    # pandas raises some OSErrors with a message but no strerror.
    raise ConfigError(f"invalid --output={output}: {e.strerror or e}") from None
  logging.info("Scored %d rows; %d flagged at threshold %.6g; wrote %s", len(scores),
               int(decisions.sum()), model.threshold, output)
  return scores


def evaluate(config: Config, export_dir: str) -> dict:
  """Metrics of the export on a labelled CSV: exact AUC/PR-AUC, and counts at 0.5 and at the
  export's threshold.

  Returns:
    {"rows", "positives", "at_0.5": exact metrics, "threshold": {"value", ..., confusion}}.

  Raises:
    ConfigError: no --data_path.
    DataError: no label column, bad labels, missing features.
  """
  _check_data_path(config)
  model = ExportedModel(export_dir)
  frame = _read(config, model, labelled=True)
  label = model.info.get("label_column", config.label_column)
  if label not in frame.columns:
    raise DataError(f"label column '{label}' not found in {config.data_path}; "
                    "--mode=evaluate needs labelled rows (use --mode=predict to score)")
  labels = preprocessing.parse_labels(frame[label], label)
  probabilities, _ = model.score(frame)
  at_half = evaluation.exact_metrics(labels, probabilities)
  th = dict(model.info["threshold"])
  th.update(threshold.confusion(labels, probabilities, model.threshold))
  print(evaluation.format_table({"at 0.5": at_half, f"at {model.threshold:.4g}": th}))
  return {"rows": int(len(labels)), "positives": int(labels.sum()), "at_0.5": at_half,
          "threshold": th}
