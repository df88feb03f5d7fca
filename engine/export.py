"""The deployable model: a SavedModel that takes raw columns and returns score and decision.

  <model_dir>/export/
    saved_model.pb, variables/   signature `serving_default`: one named input per raw feature
                                 column, float64 for a numeric one (NaN: a gap), string for a
                                 categorical one ("": a gap), float64 seconds for the time
                                 column where time features are derived from it
    assets.extra/serving.json    raw columns, their signature names and types, the ID columns,
                                 the threshold and how it was chosen, the calibration: what
                                 a caller needs without loading TensorFlow

The preprocessing fitted on the training split (input_pipeline/preprocessing.py: medians,
scaling, vocabularies) runs inside the model, so a serving system sends the CSV's columns as
they are; a category never seen in training is scored through the out-of-vocabulary bucket.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

from engine import calibration as calibration_lib
from engine import models
from engine.calibration import IDENTITY, Calibration
from input_pipeline import category_stats
from input_pipeline import columns as columns_lib
from input_pipeline.errors import DataError
from input_pipeline.preprocessing import Preprocessor

EXPORT_DIR = "export"
SERVING_JSON = os.path.join("assets.extra", "serving.json")


def signature_name(column: str) -> str:
  """A signature input name for a CSV column ("Log Amount" -> "Log_Amount").

  What `tf.function` keeps as a signature's argument name: letters, digits and `_`, starting
  with a letter. It rewrites anything else itself (`a.b` -> `a_b`, `9x` -> `arg_9x`), after the
  collision check below, so two columns could meet there only at export, after training; and
  the names in serving.json would not be the signature's. So the name is made here: any other
  character becomes `_`, and a name not starting with a letter gets a `c` in front.
  """
  name = re.sub(r"[^A-Za-z0-9_]", "_", column)
  return name if re.match(r"[A-Za-z]", name) else "c" + name


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
               logit_shift: float = 0.0, calibration: Calibration = IDENTITY):
    super().__init__(name="imbalanced_engine")
    self.model = model
    self.preprocessor = preprocessor
    self.threshold = tf.Variable(threshold, dtype=tf.float64, trainable=False, name="threshold")
    self.logit_shift = tf.Variable(logit_shift, dtype=tf.float64, trainable=False,
                                   name="logit_shift")
    self.calibration_scale = tf.Variable(calibration.scale, dtype=tf.float64, trainable=False,
                                         name="calibration_scale")
    self.calibration_offset = tf.Variable(calibration.offset, dtype=tf.float64, trainable=False,
                                          name="calibration_offset")
    # The categories' lookup tables (input_pipeline/category_stats.py): attributes of the
    # module, so the SavedModel holds them.
    self.category_tables = category_stats.tf_tables(preprocessor.category_stats)
    self.columns = preprocessor.raw_columns
    self.input_names = input_names(self.columns)
    categorical = set(preprocessor.categorical_columns)
    specs = {n: tf.TensorSpec([None], tf.string if c in categorical else tf.float64, name=n)
             for c, n in zip(self.columns, self.input_names)}
    # No Python control flow on tensors: autograph would only slow the tracing.
    self.serve = tf.function(self._serve, input_signature=[specs], autograph=False)

  def _serve(self, inputs):
    raw = {c: inputs[n] for c, n in zip(self.columns, self.input_names)}
    features = self.preprocessor.tf_call(raw, self.category_tables)
    logits = models.member_logits(self.model, features)  # [members, batch]
    # Sigmoid in float64 of the prior-corrected logit, averaged over the members, then
    # calibrated, as the engine's evaluation does, so scores match it on equal logits and the
    # float64 threshold splits them the same way.
    probability = tf.reduce_mean(tf.sigmoid(tf.cast(logits, tf.float64) + self.logit_shift),
                                 axis=0)
    probability = calibration_lib.apply_tf(probability, self.calibration_scale,
                                           self.calibration_offset)
    return {"probability": probability, "decision": probability >= self.threshold}


def export_model(model, preprocessor: Preprocessor, *, threshold: dict, export_dir: str,
                 logit_shift: float = 0.0, calibration: Calibration = IDENTITY) -> str:
  """Writes the SavedModel and serving.json; returns export_dir.

  Args:
    model: the trained classifier (features in, logits out).
    preprocessor: the fitted preprocessing of the run.
    threshold: results.json's "threshold" entry (its "value" is the decision threshold).
    export_dir: where to write; replaced if it exists.
    logit_shift: added to every member's logit: the prior correction (engine/losses.py), so the
      served `probability` is the real-world one.
    calibration: applied to the members' mean probability (engine/calibration.py).
  """
  module = ServingModule(model, preprocessor, threshold["value"], logit_shift, calibration)
  tmp = export_dir.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.saved_model.save(module, tmp, signatures={
      "serving_default": module.serve.get_concrete_function()})
  categorical = set(preprocessor.categorical_columns)
  info = {"raw_columns": preprocessor.raw_columns, "input_names": module.input_names,
          "input_types": ["string" if c in categorical else "float64"
                          for c in preprocessor.raw_columns],
          "categorical_columns": preprocessor.categorical_columns,
          "id_columns": preprocessor.id_columns, "time_column": preprocessor.time_column,
          "time_features": preprocessor.time_features,
          "nonnegative_columns": ["Amount"] if preprocessor.log_amount else [],
          "label_column": preprocessor.label_column, "logit_shift": logit_shift,
          "calibration": calibration.as_dict(),
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
    self._serve = self.loaded.signatures["serving_default"]

  @property
  def raw_columns(self) -> list[str]:
    return self.info["raw_columns"]

  @property
  def id_columns(self) -> list[str]:
    return self.info.get("id_columns", [])

  @property
  def categorical_columns(self) -> list[str]:
    return self.info.get("categorical_columns", [])

  @property
  def numeric_columns(self) -> list[str]:
    categorical = set(self.categorical_columns)
    return [c for c in self.raw_columns if c not in categorical]

  @property
  def threshold(self) -> float:
    return float(self.info["threshold"]["value"])

  def inputs(self, frame) -> dict[str, np.ndarray]:
    """The signature's inputs from the raw columns of `frame` (any order, extra columns ignored).

    Raises:
      DataError: a raw column is missing; a numeric one holds what training refuses (text,
        Inf, beyond ±1e100, a negative Amount where the credit-card cleaning takes its log).
    """
    missing = [c for c in self.raw_columns if c not in frame.columns]
    if missing:
      raise DataError(f"missing feature column(s): {', '.join(missing)}")
    out = {}
    types = self.info.get("input_types", ["float64"] * len(self.raw_columns))
    for column, name, kind in zip(self.raw_columns, self.info["input_names"], types):
      if kind == "string":
        out[name] = columns_lib.category_strings(frame[column]).astype(str).astype(object)
        continue
      if self.info.get("time_features") and column == self.info.get("time_column"):
        # Seconds, of numbers or date-times, exactly as training read the time column.
        out[name] = columns_lib.parse_times(frame[column], column)
        continue
      values = columns_lib.served_values(frame, [column],
                                         self.info.get("nonnegative_columns", ()))
      out[name] = values[:, 0]
    return out

  def score(self, frame, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities float64, decisions bool) for the rows of `frame`; empty numeric cells are
    gaps (filled with the training median), as in training; values training refuses are
    refused.

    Raises:
      DataError: see `inputs`.
    """
    inputs = self.inputs(frame)
    probs, decisions = [], []
    for start in range(0, len(frame), batch_size):
      out = self._serve(**{n: tf.constant(v[start:start + batch_size])
                           for n, v in inputs.items()})
      probs.append(out["probability"].numpy())
      decisions.append(out["decision"].numpy())
    if not probs:
      return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(probs), np.concatenate(decisions)
