"""Parquet in and out: the same rows, preprocessing and scores as the CSV they copy; bad
Parquet refused in one line."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import export, predict
from engine.config import Config
from tests.builders import build_model
from input_pipeline import loading, prepare, readers
from input_pipeline.errors import DataError
from tests.conftest import real_data_path, run_main

ROWS = 3000


def _frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  y = (rng.random(rows) < 0.05).astype(np.int64)
  return pd.DataFrame({
      "txn": [f"{i:07d}" for i in range(rows)],
      "x": (rng.normal(size=rows) + 2 * y).round(4),
      "gappy": np.where(rng.random(rows) < 0.2, np.nan, rng.normal(size=rows).round(3)),
      "zip": np.array(["AB", "CD", "01234"], object)[rng.integers(0, 3, rows)],
      "flag": rng.random(rows) < 0.5, "mcc": rng.choice([5411, 5812, 7995], rows), "y": y})


CONFIG = Config(label_column="y", id_columns=("txn",), categorical_columns=("mcc",),
                min_category_count=1, hidden_units=(8,), prepare_shards=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """The same table as CSV, as a Parquet file (zip dictionary-encoded), and as a directory of
  two Parquet files."""
  d = tmp_path_factory.mktemp("pq")
  frame = _frame()
  frame.to_csv(d / "t.csv", index=False)
  table = pa.Table.from_pandas(frame, preserve_index=False)
  table = table.set_column(3, "zip", table["zip"].dictionary_encode())
  pq.write_table(table, d / "t.parquet", row_group_size=700)
  os.makedirs(d / "parts")
  pq.write_table(table.slice(0, 1000), d / "parts" / "part-0.parquet")
  pq.write_table(table.slice(1000), d / "parts" / "part-1.parquet")
  return d


@pytest.mark.parametrize("name", ["t.parquet", "parts"])
def test_parquet_trains_on_the_rows_the_csv_gives(files, name):
  csv, _ = loading.load_splits(CONFIG.replace(data_path=str(files / "t.csv")))
  other, _ = loading.load_splits(CONFIG.replace(data_path=str(files / name)))
  assert other.preprocessor == csv.preprocessor
  for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(other, field), getattr(csv, field))


def test_prepare_reads_a_parquet_directory_as_the_csv(files, tmp_path):
  a = prepare.prepare(CONFIG.replace(data_path=str(files / "t.csv")), str(tmp_path / "a"))
  b = prepare.prepare(CONFIG.replace(data_path=str(files / "parts")), str(tmp_path / "b"))
  assert a["preprocessing"] == b["preprocessing"] and a["counts"] == b["counts"]


@pytest.fixture(scope="module")
def export_dir(files, tmp_path_factory):
  splits, _ = loading.load_splits(CONFIG.replace(data_path=str(files / "t.csv")))
  model = build_model(CONFIG, num_features=splits.num_features, output_bias=-1.0)
  return export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                             export_dir=str(tmp_path_factory.mktemp("pqx") / "export"))


def test_predict_parquet_to_parquet_scores_as_csv_to_csv(files, export_dir, tmp_path):
  predict.predict(CONFIG.replace(data_path=str(files / "t.csv")), export_dir,
                  str(tmp_path / "s.parquet"))
  csv = pq.read_table(tmp_path / "s.parquet").to_pandas()  # scored from the CSV, unrounded
  for source in ("t.parquet", "parts"):
    out = tmp_path / f"{source}.scores.parquet"
    proc = run_main("--mode=predict", f"--export_dir={export_dir}",
                    f"--data_path={files / source}", f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = pq.read_table(out).to_pandas()
    assert written["txn"].tolist() == csv["txn"].tolist()
    np.testing.assert_array_equal(written["probability"], csv["probability"])


def _bad(kind: str, d) -> str:
  frame = _frame(200)
  if kind == "corrupt":
    (d / "bad.parquet").write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")
  elif kind == "no label":
    frame.drop(columns="y").to_parquet(d / "bad.parquet")
  elif kind == "label type":
    frame.assign(y=np.where(frame["y"] == 1, "fraud", "ok")).to_parquet(d / "bad.parquet")
  elif kind == "schemas":
    os.makedirs(d / "bad.parquet")
    frame.iloc[:100].to_parquet(d / "bad.parquet" / "a.parquet")
    frame.iloc[100:].astype({"x": str}).to_parquet(d / "bad.parquet" / "b.parquet")
  return str(d / "bad.parquet")


@pytest.mark.parametrize("kind,message", [
    ("corrupt", "is not a readable Parquet file"),
    ("no label", "label column 'y' not found"),
    ("label type", "label column 'y' must hold 0/1"),
    ("schemas", "has another schema than"),
])
@pytest.mark.parametrize("mode", ["train", "prepare"])
def test_bad_parquet_is_one_line_and_writes_nothing(tmp_path, kind, message, mode):
  path = _bad(kind, tmp_path)
  out = tmp_path / "out"
  proc = run_main(f"--mode={mode}", f"--data_path={path}", "--label_column=y",
                  f"--model_dir={out}", f"--output_dir={out}", "--epochs=1")
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
  assert message in proc.stderr, proc.stderr
  assert not os.path.exists(out)


def test_a_parquet_copy_of_the_credit_card_set_gives_the_same_splits(tmp_path):
  path = real_data_path()
  frame = readers.read_table(path, ("Class",))
  copy = tmp_path / "creditcard.parquet"
  frame.astype({"Class": np.int64}).to_parquet(copy, index=False)
  config = Config(data_path=path)
  csv, _ = loading.load_splits(config)
  parquet, _ = loading.load_splits(config.replace(data_path=str(copy)))
  assert parquet.preprocessor == csv.preprocessor
  np.testing.assert_array_equal(parquet.x_test, csv.x_test)
  np.testing.assert_array_equal(parquet.x_train, csv.x_train)


def test_readers_refuse_an_unknown_column_request(files):
  with pytest.raises(DataError, match="lacks the column"):
    next(readers.open_table(str(files / "t.parquet")).chunks(10, columns=["nope"]))


@pytest.mark.parametrize("mode,kind,message", [
    ("predict", "corrupt", "is not a readable Parquet file"),
    ("predict", "schemas", "has another schema than"),
    ("evaluate", "no label", "label column 'y' not found"),
    ("evaluate", "label type", "must hold 0/1"),
])
def test_scoring_bad_parquet_is_one_line_and_writes_nothing(export_dir, tmp_path, mode, kind,
                                                            message):
  path = _bad(kind, tmp_path)
  out = tmp_path / "scores.parquet"
  proc = run_main(f"--mode={mode}", f"--export_dir={export_dir}", f"--data_path={path}",
                  f"--output={out}")
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
  assert message in proc.stderr, proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["bad.parquet"]  # No scores, no partial file.
