"""The deployable model: a SavedModel that takes raw columns and returns score and decision.

  <model_dir>/export/
    saved_model.pb, variables/   signatures `serving_default` (one named float64 input per raw
                                 CSV column) and `score_rows` (a [batch, columns] matrix in
                                 `raw_columns` order)
    assets.extra/serving.json    raw columns, their signature names, the threshold and how it
                                 was chosen: what a caller needs without loading TensorFlow

The cleaning and scaling fitted on the training split (input_pipeline/preprocessing.py) run
inside the model, so a serving system sends the CSV's columns as they are.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

from input_pipeline.errors import DataError
from input_pipeline.preprocessing import Preprocessor

EXPORT_DIR = "export"
SERVING_JSON = os.path.join("assets.extra", "serving.json")


def signature_name(column: str) -> str:
  """A signature input name for a CSV column ("Log Amount" -> "Log_Amount").

  SavedModel input names allow letters, digits and `_.-/`; anything else becomes `_`.
  """
  name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", column)
  return name if re.match(r"[A-Za-z0-9.]", name) else "c" + name


def input_names(columns: list[str]) -> list[str]:
  """The signature input name of each raw column; DataError if two of them collide.

  Checked before training (engine/loop.py's preflight), not only at export: a collision found
  after the last epoch would throw the whole run away.
  """
  names = [signature_name(c) for c in columns]
  seen = {}
  for column, name in zip(columns, names):
    if name in seen:
      raise DataError(f"columns {seen[name]!r} and {column!r} both become the serving input "
                      f"name {name!r}; rename one of them")
    seen[name] = column
  return names


class ServingModule(tf.Module):
  """Raw columns -> preprocessing -> classifier -> probability and decision."""

  def __init__(self, model, preprocessor: Preprocessor, threshold: float,
               logit_shift: float = 0.0):
    super().__init__(name="imbalanced_engine")
    self.model = model
    self.preprocessor = preprocessor
    self.threshold = tf.Variable(threshold, dtype=tf.float64, trainable=False, name="threshold")
    self.logit_shift = tf.Variable(logit_shift, dtype=tf.float64, trainable=False,
                                   name="logit_shift")
    columns = preprocessor.raw_columns
    self.input_names = input_names(columns)
    # No Python control flow on tensors in either: autograph would only slow the tracing.
    self.score_rows = tf.function(
        self._score_rows, autograph=False,
        input_signature=[tf.TensorSpec([None, len(columns)], tf.float64, name="rows")])
    specs = {n: tf.TensorSpec([None], tf.float64, name=n) for n in self.input_names}
    self.serve = tf.function(self._serve, input_signature=[specs], autograph=False)

  def _score_rows(self, rows):
    features = self.preprocessor.tf_call(rows)
    logits = self.model(features, training=False)  # [members, batch]
    # Sigmoid in float64 of the prior-corrected logit, averaged over the members, as the
    # engine's evaluation does, so scores match it on equal logits and the float64 threshold
    # splits them the same way.
    probability = tf.reduce_mean(tf.sigmoid(tf.cast(logits, tf.float64) + self.logit_shift),
                                 axis=0)
    return {"probability": probability, "decision": probability >= self.threshold}

  def _serve(self, columns):
    return self._score_rows(tf.stack([columns[n] for n in self.input_names], axis=1))


def export_model(model, preprocessor: Preprocessor, *, threshold: dict, export_dir: str,
                 logit_shift: float = 0.0) -> str:
  """Writes the SavedModel and serving.json; returns export_dir.

  Args:
    model: the trained classifier (features in, logits out).
    preprocessor: the fitted preprocessing of the run.
    threshold: results.json's "threshold" entry (its "value" is the decision threshold).
    export_dir: where to write; replaced if it exists.
    logit_shift: added to every member's logit: the prior correction (engine/losses.py), so the
      served `probability` is the real-world one.
  """
  module = ServingModule(model, preprocessor, threshold["value"], logit_shift)
  tmp = export_dir.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.saved_model.save(module, tmp, signatures={
      "serving_default": module.serve.get_concrete_function(),
      "score_rows": module.score_rows.get_concrete_function()})
  info = {"raw_columns": preprocessor.raw_columns, "input_names": module.input_names,
          "label_column": preprocessor.label_column, "logit_shift": logit_shift,
          "threshold": {k: v for k, v in threshold.items() if k not in ("validation", "test")}}
  os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
  with open(os.path.join(tmp, SERVING_JSON), "w") as f:
    json.dump(info, f, indent=2)
  # Swap in whole: a reader never sees half an export.
  if tf.io.gfile.exists(export_dir):
    tf.io.gfile.rmtree(export_dir)
  os.replace(tmp, export_dir)
  return export_dir


class ExportedModel:
  """A loaded export: scores a raw frame (pandas) with the CSV's column names."""

  def __init__(self, export_dir: str):
    info_path = os.path.join(export_dir, SERVING_JSON)
    if not os.path.exists(info_path):
      raise DataError(f"--export_dir={export_dir} holds no export (no {SERVING_JSON}); "
                      "train a model first, it exports to <model_dir>/export")
    with open(info_path) as f:
      self.info = json.load(f)
    self.loaded = tf.saved_model.load(export_dir)
    self._score = self.loaded.signatures["score_rows"]

  @property
  def raw_columns(self) -> list[str]:
    return self.info["raw_columns"]

  @property
  def threshold(self) -> float:
    return float(self.info["threshold"]["value"])

  def score(self, frame, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities float64, decisions bool) for the rows of `frame`.

    Raises:
      DataError: a raw column is missing, or holds non-numeric or non-finite values.
    """
    missing = [c for c in self.raw_columns if c not in frame.columns]
    if missing:
      raise DataError(f"missing feature column(s): {', '.join(missing)}")
    try:
      rows = frame[self.raw_columns].to_numpy(np.float64)
    except (ValueError, TypeError) as e:
      raise DataError(f"feature columns must be numeric: {e}") from None
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
      raise DataError(f"{int(bad.sum())} row(s) have NaN or Inf features, e.g. row "
                      f"{int(np.flatnonzero(bad)[0])}")
    probs, decisions = [], []
    for start in range(0, len(rows), batch_size):
      out = self._score(rows=tf.constant(rows[start:start + batch_size]))
      probs.append(out["probability"].numpy())
      decisions.append(out["decision"].numpy())
    if not probs:
      return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(probs), np.concatenate(decisions)
