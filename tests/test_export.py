import json
import re
import os

import numpy as np
import pytest
import tensorflow as tf

from engine import evaluation, export
from engine.config import Config
from tests.builders import build_model, logits
from input_pipeline import preprocessing
from input_pipeline.errors import DataError
from tests.conftest import run_main, small_frame


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  frame = small_frame(rows=1000, positives=30)
  config = Config(hidden_units=(8, 4))
  splits = preprocessing.split_and_encode(frame, config)
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  engine_probs = evaluation.predict_probabilities(model, splits.preprocessor(frame))
  threshold = float(np.quantile(engine_probs, 0.9))
  path = str(tmp_path_factory.mktemp("export") / "export")
  export.export_model(model, splits.preprocessor,
                      threshold={"value": threshold, "target_recall": 0.9,
                                 "validation": {}, "test": {}}, export_dir=path)
  return frame, engine_probs, threshold, path, export.ExportedModel(path)


def test_export_reproduces_the_engine_from_raw_columns(exported):
  frame, engine_probs, threshold, path, loaded = exported
  probs, decisions = loaded.score(frame.drop(columns=["Class"]))
  np.testing.assert_allclose(probs, engine_probs, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(decisions, engine_probs >= threshold)
  assert 0 < decisions.sum() < len(frame)  # the threshold splits the rows


def test_serving_default_takes_named_raw_columns(exported):
  frame, engine_probs, threshold, path, loaded = exported
  signature = loaded.loaded.signatures["serving_default"]
  inputs = {c: tf.constant(frame[c].to_numpy(np.float64)[:50]) for c in loaded.raw_columns}
  out = signature(**inputs)
  np.testing.assert_allclose(out["probability"].numpy(), engine_probs[:50], atol=1e-5)
  np.testing.assert_array_equal(out["decision"].numpy(), engine_probs[:50] >= threshold)


def test_serving_json_names_columns_and_threshold(exported):
  frame, _, threshold, path, _ = exported
  with open(os.path.join(path, export.SERVING_JSON)) as f:
    info = json.load(f)
  # Exactly the columns the model uses: on the credit-card set Time is read as the time column
  # (for the hour features), after the numeric features.
  assert info["raw_columns"] == [c for c in frame.columns if c not in ("Class", "Time")] + ["Time"]
  assert info["time_column"] == "Time"
  assert info["threshold"] == {"value": threshold, "target_recall": 0.9}
  assert not os.path.exists(path + ".tmp")


@pytest.mark.parametrize("change,message", [
    (lambda f: f.drop(columns=["V3"]), "missing feature column.*V3"),
    (lambda f: f.assign(V1=np.where(np.arange(len(f)) == 7, np.inf, f["V1"])),
     "column 'V1' holds Inf in 1 row.*data row 7"),
    (lambda f: f.assign(V2=np.where(np.arange(len(f)) == 3, "high", f["V2"].astype(str))),
     "column 'V2' was numeric in training but holds text here, e.g. 'high' in data row 3"),
])
def test_bad_rows_are_data_errors(exported, change, message):
  frame, _, _, _, loaded = exported
  with pytest.raises(DataError, match=message):
    loaded.score(change(frame))


def test_a_directory_without_export_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match="holds no export"):
    export.ExportedModel(str(tmp_path))


@pytest.mark.parametrize("column,name", [("V1", "V1"), ("Log Amount", "Log_Amount"),
                                         ("_x", "c_x"), ("a.b-c/d", "a_b_c_d"),
                                         ("9x", "c9x"),
                                         ("é", "c_")])
def test_signature_names(column, name):
  assert export.signature_name(column) == name


def test_columns_tensorflow_would_rename_still_serve(tmp_path):
  """A dot or a leading digit in a column name: TensorFlow rewrites such argument names, so
  the export names them itself; serving.json and the signature agree, and scoring works."""
  frame = small_frame(rows=600, positives=20).rename(columns={"V1": "v.1", "V2": "9lives"})
  config = Config(hidden_units=(4,))
  splits = preprocessing.split_and_encode(frame, config)
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  path = export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                             export_dir=str(tmp_path / "export"))
  loaded = export.ExportedModel(path)
  inputs = loaded.loaded.signatures["serving_default"].structured_input_signature[1]
  assert set(inputs) == set(loaded.info["input_names"]) and "v_1" in inputs and "c9lives" in inputs
  probs, _ = loaded.score(frame.drop(columns=["Class"]))
  np.testing.assert_allclose(probs, evaluation.predict_probabilities(
      model, splits.preprocessor(frame)), rtol=0, atol=1e-6)


def _poison(frame, column, value, row=5):
  frame = frame.drop(columns=["Class"]).astype({column: object})
  frame.loc[row, column] = value
  return frame


REFUSED = [("Amount", -3.5, r"column 'Amount' holds 1 negative value\(s\), e.g. '-3.5'"),
           ("V4", "n/a?", r"column 'V4' was numeric in training but holds text here"),
           ("V5", np.inf, r"column 'V5' holds Inf in 1 row"),
           ("V6", 1e101, r"column 'V6' holds 1 value\(s\) beyond ±1e\+100")]


@pytest.mark.parametrize("column,value,message", REFUSED)
def test_serving_refuses_what_training_refuses(exported, column, value, message):
  """Never a silent fill with the median: the SavedModel path (ExportedModel) and the numpy
  path (Preprocessor) name the column and the row; the signature itself fails too."""
  frame, _, _, path, loaded = exported
  bad = _poison(frame, column, value)
  with pytest.raises(DataError, match=message + ".* in data row 5"):
    loaded.score(bad)
  pre = preprocessing.split_and_encode(frame, Config(hidden_units=(8, 4))).preprocessor
  with pytest.raises(DataError, match=f"column '{column}'"):
    pre(bad)
  if isinstance(value, float):
    inputs = {c: tf.constant(frame[c].to_numpy(np.float64)[:10]) for c in loaded.raw_columns}
    inputs[column] = tf.constant(np.r_[value, np.zeros(9)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=column):
      loaded.loaded.signatures["serving_default"](**inputs)


@pytest.mark.parametrize("column,value,message", REFUSED[:2])
def test_predict_refuses_them_in_one_line_and_writes_nothing(exported, tmp_path, column, value,
                                                             message):
  frame, _, _, path, _ = exported
  rows = tmp_path / "rows.csv"
  _poison(frame, column, value).to_csv(rows, index=False)
  out = tmp_path / "scores.csv"
  out.write_text("kept\n")
  proc = run_main("--mode=predict", f"--export_dir={path}", f"--data_path={rows}",
                  f"--output={out}")
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert re.search(message, proc.stderr), proc.stderr
  assert out.read_text() == "kept\n" and set(os.listdir(tmp_path)) == {"rows.csv", "scores.csv"}
