import json
import os

import numpy as np
import pandas as pd
import pytest

from engine import predict
from engine.config import Config
from engine.export import ExportedModel
from input_pipeline import preprocessing, sources
from input_pipeline.errors import DataError
from tests.conftest import read_json, run_main

CONFIG = Config(dataset="synthetic", synthetic_rows=20000, seed=0)


@pytest.fixture(scope="module")
def test_rows(all_run):
  """The raw rows of the run's test split, as a user would have them in a CSV."""
  frame, _ = sources.load_frame(CONFIG)
  _, _, rows = preprocessing.stratified_split(
      frame["Class"].to_numpy(), validation_fraction=CONFIG.validation_fraction,
      test_fraction=CONFIG.test_fraction, seed=CONFIG.seed)
  return frame.iloc[rows].reset_index(drop=True)


def test_predict_scores_a_csv_without_labels(all_run, test_rows, tmp_path):
  export_dir = os.path.join(all_run, "oversample", "export")
  new = tmp_path / "new.csv"
  test_rows.drop(columns=["Class"]).to_csv(new, index=False)
  out = tmp_path / "scores.csv"
  proc = run_main("--mode=predict", f"--export_dir={export_dir}", f"--data_path={new}",
                  f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  scores = pd.read_csv(out)
  assert list(scores.columns) == ["row", "probability", "decision"]
  assert scores["row"].tolist() == list(range(len(test_rows)))
  # Scored from the CSV as written (its floats are the shortest decimal forms, not the
  # in-memory float32 values); the output keeps 10 significant digits.
  probs, decisions = ExportedModel(export_dir).score(pd.read_csv(new))
  np.testing.assert_allclose(scores["probability"], probs, rtol=1e-9, atol=1e-12)
  np.testing.assert_array_equal(scores["decision"], decisions.astype(int))
  results = read_json(os.path.join(all_run, "oversample", "results.json"))
  th = results["threshold"]["test"]
  assert scores["decision"].sum() == th["tp"] + th["fp"]


def test_evaluate_reproduces_the_run_test_figures(all_run, test_rows, tmp_path):
  export_dir = os.path.join(all_run, "class_weight", "export")
  labelled = tmp_path / "labelled.csv.gz"
  test_rows.to_csv(labelled, index=False)
  out = tmp_path / "metrics.json"
  proc = run_main("--mode=evaluate", f"--export_dir={export_dir}", f"--data_path={labelled}",
                  f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  metrics = json.loads(out.read_text())
  results = read_json(os.path.join(all_run, "class_weight", "results.json"))
  assert metrics["rows"] == len(test_rows)
  assert metrics["at_0.5"]["auc"] == pytest.approx(results["test"]["auc"], abs=1e-6)
  assert metrics["at_0.5"]["prc"] == pytest.approx(results["test"]["prc"], abs=1e-6)
  for k in ("tp", "fp", "tn", "fn"):
    assert metrics["at_0.5"][k] == results["test"][k]
    assert metrics["threshold"][k] == results["threshold"]["test"][k]
  assert metrics["threshold"]["value"] == results["threshold"]["value"]
  assert "at 0.5" in proc.stdout


def test_bad_input_is_one_line_and_exit_2(all_run, test_rows, tmp_path):
  path = tmp_path / "bad.csv"
  test_rows.head(50).drop(columns=["V3", "Class"]).to_csv(path, index=False)
  proc = run_main("--mode=predict", f"--export_dir={os.path.join(all_run, 'baseline', 'export')}",
                  f"--data_path={path}", f"--output={tmp_path / 'out.csv'}")
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0
  assert "missing feature column(s): V3" in proc.stderr
  assert not os.path.exists(tmp_path / "out.csv")


def test_evaluate_needs_labels(all_run, test_rows, tmp_path):
  path = tmp_path / "unlabelled.csv"
  test_rows.head(50).drop(columns=["Class"]).to_csv(path, index=False)
  with pytest.raises(DataError, match="label column 'Class' not found"):
    predict.evaluate(CONFIG.replace(data_path=str(path)),
                     os.path.join(all_run, "baseline", "export"))


def test_an_id_column_is_kept(all_run, test_rows, tmp_path):
  path = tmp_path / "with_id.csv"
  test_rows.head(20).drop(columns=["Class"]).assign(id=[f"tx{i}" for i in range(20)]).to_csv(
      path, index=False)
  predict.predict(CONFIG.replace(data_path=str(path)),
                  os.path.join(all_run, "baseline", "export"), str(tmp_path / "s.csv"))
  scores = pd.read_csv(tmp_path / "s.csv")
  assert scores["id"].tolist() == [f"tx{i}" for i in range(20)]


def test_predict_needs_an_output(all_run):
  with pytest.raises(Exception, match="--output"):
    predict.predict(CONFIG.replace(data_path="x.csv"), os.path.join(all_run, "baseline", "export"),
                    None)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
  """An export of an untrained model (scores vary by row) and the labelled rows it scores."""
  from engine import export
  from tests.builders import build_model
  from tests.conftest import small_frame
  d = tmp_path_factory.mktemp("stream")
  frame = small_frame(rows=1000, positives=30).assign(id=[f"t{i:04d}" for i in range(1000)])
  config = Config(hidden_units=(8,), id_columns=("id",))
  splits = preprocessing.split_and_encode(frame, config)
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  path = export.export_model(model, splits.preprocessor, threshold={"value": 0.3},
                             export_dir=str(d / "export"))
  frame.to_csv(d / "rows.csv", index=False)
  return path, str(d / "rows.csv"), frame


@pytest.mark.parametrize("chunk", [7, 1000, 4096])
def test_predict_streams_chunks_in_order_with_ids_and_progress(small_export, tmp_path, chunk,
                                                               monkeypatch, caplog):
  import logging
  path, rows, frame = small_export
  monkeypatch.setattr(predict, "CHUNK_ROWS", chunk)
  monkeypatch.setattr(predict, "PROGRESS_SECONDS", 0.0)
  with caplog.at_level(logging.INFO):
    summary = predict.predict(Config(data_path=rows), path, str(tmp_path / "s.csv"))
  scores = pd.read_csv(tmp_path / "s.csv")
  assert summary["rows"] == len(scores) == len(frame)
  assert scores["id"].tolist() == frame["id"].tolist()
  expected, _ = ExportedModel(path).score(frame)
  np.testing.assert_allclose(scores["probability"], expected, rtol=1e-9)
  assert "rows/s" in caplog.text and "ETA" in caplog.text  # the progress line
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_evaluate_streams_to_the_in_memory_metrics(small_export, monkeypatch):
  from engine import evaluation
  path, rows, frame = small_export
  monkeypatch.setattr(predict, "CHUNK_ROWS", 64)
  metrics = predict.evaluate(Config(data_path=rows), path)
  expected = evaluation.exact_metrics(frame["Class"].to_numpy(),
                                      ExportedModel(path).score(frame)[0])
  assert metrics["rows"] == len(frame) and metrics["at_0.5"] == expected  # exact


def test_a_bad_row_late_in_the_file_leaves_the_previous_output(small_export, tmp_path,
                                                                monkeypatch):
  path, _, frame = small_export
  bad = frame.astype({"V3": object})
  bad.loc[990, "V3"] = "oops"
  bad.to_csv(tmp_path / "bad.csv", index=False)
  (tmp_path / "s.csv").write_text("previous\n")
  monkeypatch.setattr(predict, "CHUNK_ROWS", 100)
  with pytest.raises(DataError, match="column 'V3' .* data row 990"):
    predict.predict(Config(data_path=str(tmp_path / "bad.csv")), path, str(tmp_path / "s.csv"))
  assert (tmp_path / "s.csv").read_text() == "previous\n"
  assert sorted(os.listdir(tmp_path)) == ["bad.csv", "s.csv"]
