"""Column roles and the reading of categories, IDs and times: the same values whatever pandas
guesses about a file or a chunk of it."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from engine import evaluation, export, predict
from engine.config import Config
from engine.model import build_model
from input_pipeline import columns, prepare, preprocessing, readers, sources
from input_pipeline.errors import DataError
from tests.conftest import read_json


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
  in_memory = preprocessing.prepare(sources.load_frame(config)[0], config).preprocessor
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
  scores = predict.predict(config.replace(data_path=str(tmp_path / "some.csv")), export_dir,
                           str(tmp_path / "scores.csv"))
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
    preprocessing.prepare(frame, Config(label_column="y"))


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
  splits = preprocessing.prepare(frame, config)
  model = build_model(config, num_features=splits.num_features, output_bias=-1.0)
  export_dir = export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                                   export_dir=str(tmp_path / "export"))
  frame[["x"]].to_csv(tmp_path / "rows.csv", index=False)  # no label: one column
  scores = predict.predict(config.replace(data_path=str(tmp_path / "rows.csv")), export_dir,
                           str(tmp_path / "scores.csv"))
  assert len(scores) == len(frame)
