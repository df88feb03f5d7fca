"""Column roles and the reading of categories, IDs and times: the same values whatever pandas
guesses about a file or a chunk of it."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from engine import evaluation, export, predict
from engine.config import Config
from input_pipeline import columns, prepare, preprocessing, readers, sources
from tests.builders import build_model, logits
from input_pipeline.errors import DataError
from tests.conftest import read_json, run_main


def _table(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
  """A zip-like text category whose values look like numbers ("01234", "1.0") or not ("AB"),
  a text ID with leading zeros, and a number."""
  rng = np.random.default_rng(seed)
  zips = np.array(["01234", "1.0", "AB", "CD"], object)[rng.integers(0, 4, rows)]
  y = (rng.random(rows) < 0.1).astype(int)
  return pd.DataFrame({"txn": [f"{i:06d}" for i in range(rows)], "zip": zips,
                       "x": rng.normal(size=rows) + y, "y": y})


CONFIG = Config(label_column="y", id_columns=("txn",), clip=5.0)


def test_a_category_reads_the_same_in_any_file_or_chunk(tmp_path):
  frame = _table()
  path = tmp_path / "t.csv"
  frame.to_csv(path, index=False)
  config = CONFIG.replace(data_path=str(path))
  in_memory = preprocessing.split_and_encode(sources.load_frame(config)[0], config).preprocessor
  assert set(in_memory.vocabularies[0]) == {"01234", "1.0", "AB", "CD"}
  # Chunks of 2 rows: some hold only number-like zips, which pandas alone would read as floats.
  out = tmp_path / "prepared"
  streamed = prepare.prepare(config.replace(prepare_chunk_rows=2), str(out))["preprocessing"]
  # (The random splits differ between the paths, hence the counts' order; the values may not.)
  assert sorted(streamed["vocabularies"][0]) == sorted(in_memory.vocabularies[0])
  # Scoring rows alone gives what scoring them inside the whole file gives, IDs kept as text.
  model = build_model(config.replace(hidden_units=(4,)), num_features=len(
      in_memory.feature_names), output_bias=-1.0)
  export_dir = export.export_model(model, in_memory, threshold={"value": 0.5},
                                   export_dir=str(tmp_path / "export"))
  some = frame[frame["zip"].isin(["01234", "1.0"])].head(50).drop(columns="y")
  some.to_csv(tmp_path / "some.csv", index=False)
  predict.predict(config.replace(data_path=str(tmp_path / "some.csv")), export_dir,
                  str(tmp_path / "scores.csv"))
  scores = pd.read_csv(tmp_path / "scores.csv")
  expected = evaluation.predict_probabilities(model, in_memory(readers.read_table(
      str(path), ("zip", "txn")).loc[some.index]))
  np.testing.assert_allclose(scores["probability"], expected, rtol=0, atol=1e-9)
  written = pd.read_csv(tmp_path / "scores.csv", dtype={"txn": str})
  assert written["txn"].tolist() == some["txn"].tolist()  # "000123", not 123


def test_timestamps_of_different_precision_order_together():
  coarse = columns.parse_times(pd.Series(["2024-01-02T00:00:00"]), "t")
  fine = columns.parse_times(pd.Series(["2024-01-01T00:00:00.000000001"]), "t")
  assert fine[0] < coarse[0]
  assert coarse[0] - fine[0] == pytest.approx(86400.0, abs=1e-6)


def test_a_bool_column_is_a_category_with_or_without_gaps():
  config = Config(label_column="y")
  whole = pd.DataFrame({"b": [True, False] * 30, "x": np.arange(60.0), "y": [0, 1] * 30})
  gaps = whole.astype({"b": object})
  gaps.loc[3, "b"] = np.nan
  for frame in (whole, gaps):
    assert columns.assign_roles(frame, config).categorical == ("b",)


def test_negative_amounts_are_refused_not_logged_into_gaps():
  frame = pd.DataFrame({"Amount": np.r_[-5.0, np.arange(99.0)], "y": [0, 1] * 50})
  with pytest.raises(DataError, match=r"column 'Amount' holds 1 negative value\(s\), e.g. "
                                      "-5.0: the credit-card cleaning takes log"):
    preprocessing.split_and_encode(frame, Config(label_column="y", creditcard_cleaning="on"))


def test_prepare_names_a_missing_time_column(tmp_path):
  path = tmp_path / "t.csv"
  _table().to_csv(path, index=False)
  config = CONFIG.replace(data_path=str(path), split="time", time_column="when")
  with pytest.raises(DataError, match="column 'when' named by --time_column not found"):
    prepare.prepare(config, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


def test_rows_of_a_single_feature_can_be_scored(tmp_path):
  frame = _table()[["x", "y"]]
  config = Config(label_column="y", hidden_units=(4,))
  splits = preprocessing.split_and_encode(frame, config)
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  export_dir = export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                                   export_dir=str(tmp_path / "export"))
  frame[["x"]].to_csv(tmp_path / "rows.csv", index=False)  # no label: one column
  scores = predict.predict(config.replace(data_path=str(tmp_path / "rows.csv")), export_dir,
                           str(tmp_path / "scores.csv"))
  assert scores["rows"] == len(frame) == len(pd.read_csv(tmp_path / "scores.csv"))


# ---------------------------------------------------------------------------------------------
# One reading of every column: the export scores the run's own test rows, read raw from the
# file, exactly as the run's own reading scored them.


def _kinds_file(path, rows: int, seed: int = 0) -> None:
  """Every kind of column: numbers, numbers with gaps, a text category, booleans in several
  spellings, a numeric-looking text ID, integer codes named categorical, and (in the rows
  beyond the first block of a large file) a text category whose values look like numbers."""
  rng = np.random.default_rng(seed)
  y = (rng.random(rows) < 0.05).astype(int)
  gappy = np.where(rng.random(rows) < 0.2, np.nan, rng.normal(size=rows).round(3))
  zips = np.array(["AB", "CD", "EF"], object)[rng.integers(0, 3, rows)]
  late = np.arange(rows) > rows // 2  # number-like zips only in the second half
  zips[late] = np.array(["01234", "1234", "00777"], object)[rng.integers(0, 3, late.sum())]
  flags = np.array(["true", "false", "TRUE", "False"], object)[rng.integers(0, 4, rows)]
  pd.DataFrame({
      "txn": [f"{i:07d}" for i in range(rows)],
      "x": (rng.normal(size=rows) + 2 * y).round(4), "gappy": gappy, "zip": zips,
      "flag": flags, "mcc": rng.choice([5411, 5812, 7995], rows), "y": y,
  }).to_csv(path, index=False)


def _test_rows(config) -> np.ndarray:
  """The file rows (0-based) of the run's test split, as the training path splits them."""
  frame, _ = sources.load_frame(config)
  frame = frame.set_axis(np.arange(len(frame)), axis=0)
  rows = columns.read_rows(frame, columns.assign_roles(frame, config), drop_invalid_rows=False)
  return rows.index[preprocessing.split_rows(rows, config) == 2]


def _raw_lines(path, keep: np.ndarray, out) -> None:
  """The header and the `keep` data rows of a CSV, byte for byte."""
  with open(path) as f:
    lines = f.readlines()
  with open(out, "w") as f:
    f.writelines([lines[0]] + [lines[i + 1] for i in keep])


@pytest.mark.parametrize("rows", [3000, 600_000])
def test_the_export_scores_test_rows_read_raw_as_the_run_scored_them(tmp_path, rows):
  path = tmp_path / "kinds.csv"
  _kinds_file(path, rows)
  config = Config(data_path=str(path), label_column="y", id_columns=("txn",),
                  categorical_columns=("mcc",), hidden_units=(8,), min_category_count=1)
  from input_pipeline import loading
  splits, _ = loading.load_splits(config)
  pre = splits.preprocessor
  assert pre.categorical_columns == ["zip", "flag", "mcc"]
  assert sorted(pre.vocabularies[1]) == ["false", "true"]  # one spelling per boolean
  assert set(pre.vocabularies[0]) == {"AB", "CD", "EF", "01234", "1234", "00777"}
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  run_scores = evaluation.predict_probabilities(model, splits.x_test)
  export_dir = export.export_model(model, pre, threshold={"value": 0.5},
                                   export_dir=str(tmp_path / "export"))
  test_rows = _test_rows(config)
  _raw_lines(path, test_rows, tmp_path / "test.csv")
  predict.predict(config.replace(data_path=str(tmp_path / "test.csv")), export_dir,
                  str(tmp_path / "scores.csv"))
  scores = pd.read_csv(tmp_path / "scores.csv")
  np.testing.assert_allclose(scores["probability"], run_scores, rtol=0, atol=1e-6)
  written = pd.read_csv(tmp_path / "scores.csv", dtype={"txn": str})
  assert written["txn"].tolist() == [f"{i:07d}" for i in test_rows]


def test_a_training_run_and_its_export_agree_on_its_test_rows(tmp_path):
  """End to end, through main.py: the run's test metrics, recomputed from the export's scores
  of its test rows read raw from the file, are the ones results.json reports."""
  path = tmp_path / "kinds.csv"
  _kinds_file(path, 4000)
  flags = (f"--data_path={path}", "--label_column=y", "--id_columns=txn",
           "--categorical_columns=mcc", "--min_category_count=1")
  model_dir = tmp_path / "run"
  proc = run_main(*flags, f"--model_dir={model_dir}", "--epochs=1", "--steps_per_epoch=5",
                  "--batch_size=256", "--hidden_units=8")
  assert proc.returncode == 0, proc.stderr[-2000:]
  config = Config(data_path=str(path), label_column="y", id_columns=("txn",),
                  categorical_columns=("mcc",), min_category_count=1)
  test_rows = _test_rows(config)
  _raw_lines(path, test_rows, tmp_path / "test.csv")
  out = tmp_path / "scores.csv"
  proc = run_main("--mode=predict", f"--export_dir={model_dir / 'export'}",
                  f"--data_path={tmp_path / 'test.csv'}", f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  labels = pd.read_csv(path)["y"].to_numpy()[test_rows]
  recomputed = evaluation.exact_metrics(labels, pd.read_csv(out)["probability"].to_numpy())
  reported = read_json(model_dir / "results.json")["test"]
  for name in ("loss", "auc", "prc", "tp", "fp", "tn", "fn"):
    assert recomputed[name] == pytest.approx(reported[name], abs=1e-6), name


@pytest.mark.parametrize("column", [
    pd.Series(["true", "TRUE", "True", "false", "FALSE", ""]),
    pd.Series([True, True, True, False, False, None], dtype=object),
    pd.Series(pd.array([True, True, True, False, False, None], dtype="boolean")),
])
def test_booleans_have_one_spelling(column):
  assert columns.category_strings(column).tolist() == ["true"] * 3 + ["false"] * 2 + [""]
