import json
import os

import numpy as np
import pytest
import tensorflow as tf

from engine import evaluation, export
from engine.config import Config
from tests.builders import build_model, logits
from input_pipeline import preprocessing
from input_pipeline.errors import DataError
from tests.conftest import small_frame


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  frame = small_frame(rows=1000, positives=30)
  config = Config(hidden_units=(8, 4))
  splits = preprocessing.prepare(frame, config)
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
  inputs = {c: tf.constant(frame[c].to_numpy(np.float64)[:50])
            for c in frame.columns if c != "Class"}
  out = signature(**inputs)
  np.testing.assert_allclose(out["probability"].numpy(), engine_probs[:50], atol=1e-5)
  np.testing.assert_array_equal(out["decision"].numpy(), engine_probs[:50] >= threshold)


def test_serving_json_names_columns_and_threshold(exported):
  frame, _, threshold, path, _ = exported
  with open(os.path.join(path, export.SERVING_JSON)) as f:
    info = json.load(f)
  assert info["raw_columns"] == [c for c in frame.columns if c != "Class"]
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
  splits = preprocessing.prepare(frame, config)
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  path = export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                             export_dir=str(tmp_path / "export"))
  loaded = export.ExportedModel(path)
  inputs = loaded.loaded.signatures["serving_default"].structured_input_signature[1]
  assert set(inputs) == set(loaded.info["input_names"]) and "v_1" in inputs and "c9lives" in inputs
  probs, _ = loaded.score(frame.drop(columns=["Class"]))
  np.testing.assert_allclose(probs, evaluation.predict_probabilities(
      model, splits.preprocessor(frame)), rtol=0, atol=1e-6)
