"""A real-shaped transaction table end to end: an ID, a timestamp, string and integer-coded
categories, gaps in numbers and categories, a category seen only in the test period; trained on
the past and tested on the future, in memory and prepared, exported, and scored from raw rows."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from engine import evaluation, export
from engine.config import Config
from tests.builders import build_model, logits
from input_pipeline import columns, preprocessing
from tests.conftest import read_json, run_main
from tests.test_bad_input import _snapshot
from tests.transactions import transactions

ROWS = 20_000
COLUMNS = ("--label_column=is_fraud", "--id_columns=transaction_id", "--time_column=timestamp",
           "--split=time", "--categorical_columns=mcc")
TRAIN = COLUMNS + ("--strategy=baseline", "--steps_per_epoch=25", "--epochs=12", "--patience=12")
CONFIG = Config(label_column="is_fraud", id_columns=("transaction_id",),
                time_column="timestamp", split="time", categorical_columns=("mcc",))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
  base = tmp_path_factory.mktemp("transactions")
  frame = transactions(ROWS, seed=0)
  path = base / "transactions.csv"
  frame.to_csv(path, index=False)
  return base, str(path), pd.read_csv(path)


@pytest.fixture(scope="module")
def trained(table):
  base, path, frame = table
  model_dir = str(base / "run")
  proc = run_main(f"--data_path={path}", f"--model_dir={model_dir}", *TRAIN)
  assert proc.returncode == 0, proc.stderr
  return model_dir


def _time_splits(frame):
  times = columns.parse_times(frame["timestamp"], "timestamp")
  return times, preprocessing.time_split(times, frame["is_fraud"].to_numpy(),
                                         validation_fraction=0.16, test_fraction=0.2)


def test_the_table_is_what_the_tests_need(table):
  _, _, frame = table
  times, split = _time_splits(frame)
  assert frame["transaction_id"].is_unique
  assert frame["amount"].isna().any() and frame["merchant_category"].isna().any()
  assert not np.all(np.diff(times) >= 0)  # the file is not in time order
  assert set(frame.loc[split == 2, "country"]) - set(frame.loc[split == 0, "country"]) == {"ZZ"}


def test_the_fit_sets_ids_and_time_aside_and_fills_gaps_on_the_past(table, trained):
  _, _, frame = table
  pre = preprocessing.Preprocessor.load(os.path.join(trained, "preprocessing.json"))
  assert pre.id_columns == ["transaction_id"] and pre.time_column == "timestamp"
  assert not {"transaction_id", "is_fraud"} & set(pre.raw_columns)
  # The timestamp is read only for its hour and weekday, never a feature itself.
  assert "timestamp" not in pre.feature_names and pre.raw_columns[-1] == "timestamp"
  assert pre.time_features == ["timestamp hour_sin", "timestamp hour_cos",
                               "timestamp weekday_sin", "timestamp weekday_cos"]
  assert pre.categorical_columns == ["merchant_category", "country", "device_type",
                                     "card_network", "mcc"]
  assert pre.missing_indicators == ["amount", "card_age_days", "distance_km"]
  assert "mcc=7995" in pre.feature_names and "device_type=<missing>" in pre.feature_names
  assert "country=ZZ" not in pre.feature_names  # it only appears after the training period
  # The medians and the vocabulary are the training period's, not the whole file's.
  _, split = _time_splits(frame)
  train = frame[split == 0]
  medians = pre.medians[:len(pre.numeric_columns)]  # then the time features'
  np.testing.assert_allclose(medians, train[pre.numeric_columns].median().to_numpy())
  assert not np.allclose(medians, frame[pre.numeric_columns].median().to_numpy())
  counts = train["merchant_category"].value_counts()
  assert pre.vocabularies[0] == sorted((v for v in counts.index if counts[v] >= 10),
                                       key=lambda v: (-counts[v], v))[:100]


def test_train_on_the_past_test_on_the_future(table, trained):
  _, _, frame = table
  times, split = _time_splits(frame)
  assert times[split == 0].max() <= times[split == 1].min()
  assert times[split == 1].max() <= times[split == 2].min()
  results = read_json(os.path.join(trained, "results.json"))
  for s, name in enumerate(("train", "validation", "test")):
    assert results["data"][name] == {"rows": int((split == s).sum()),
                                     "positives": int(frame["is_fraud"][split == s].sum())}
  assert results["test"]["auc"] > 0.85
  assert set(results["test"]["recall_at_fpr"]) == {"0.01", "0.001"}


def test_the_export_scores_raw_rows_as_the_run_evaluated_them(table, trained):
  """The run's test AUC, recomputed from the export's scores of the raw test rows (columns in
  another order, an extra column, gaps, the unseen country): the same to 1e-6."""
  _, _, frame = table
  _, split = _time_splits(frame)
  rows = frame[split == 2]
  raw = rows.drop(columns=["is_fraud"]).iloc[:, ::-1].assign(note="ignored")
  probabilities, _ = export.ExportedModel(os.path.join(trained, "export")).score(raw)
  auc, prc = evaluation.roc_auc_and_average_precision(rows["is_fraud"].to_numpy(),
                                                      probabilities)
  test = read_json(os.path.join(trained, "results.json"))["test"]
  assert auc == pytest.approx(test["auc"], abs=1e-6)
  assert prc == pytest.approx(test["prc"], abs=1e-6)


def test_the_export_equals_the_in_process_model_on_raw_rows(table, tmp_path):
  _, _, frame = table
  splits = preprocessing.split_and_encode(frame, CONFIG)
  model = build_model(CONFIG.replace(hidden_units=(16,)), num_features=splits.num_features,
                      output_bias=-3.0)
  raw = frame.drop(columns=["is_fraud"])
  in_process = evaluation.predict_probabilities(model, splits.preprocessor(raw))
  path = export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                             export_dir=str(tmp_path / "export"))
  served, _ = export.ExportedModel(path).score(raw.sample(frac=1.0, axis=1, random_state=0))
  np.testing.assert_allclose(served, in_process, rtol=0, atol=1e-6)
  assert np.ptp(in_process) > 0.01  # the rows are told apart: the comparison means something


def test_predict_writes_the_id_columns_beside_the_scores(table, trained):
  base, _, frame = table
  _, split = _time_splits(frame)
  future = frame[split == 2].drop(columns=["is_fraud"])
  path, out = base / "future.csv", base / "scores.csv"
  future.to_csv(path, index=False)
  proc = run_main("--mode=predict", f"--export_dir={os.path.join(trained, 'export')}",
                  f"--data_path={path}", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  scores = pd.read_csv(out)
  assert list(scores.columns) == ["transaction_id", "probability", "decision"]
  assert scores["transaction_id"].tolist() == future["transaction_id"].tolist()
  expected, _ = export.ExportedModel(os.path.join(trained, "export")).score(future)
  np.testing.assert_allclose(scores["probability"], expected, rtol=1e-9)


def test_prepared_training_matches_the_in_memory_run(table, trained):
  base, path, _ = table
  prepared, model_dir = str(base / "prepared"), str(base / "prepared_run")
  proc = run_main("--mode=prepare", f"--data_path={path}", f"--output_dir={prepared}",
                  "--prepare_chunk_rows=3000", "--prepare_shards=2", *COLUMNS)
  assert proc.returncode == 0, proc.stderr
  # The same preprocessing, fitted chunk by chunk.
  streamed = read_json(os.path.join(prepared, "metadata.json"))["preprocessing"]
  in_memory = read_json(os.path.join(trained, "preprocessing.json"))
  assert streamed["feature_names"] == in_memory["feature_names"]
  assert streamed["vocabularies"] == in_memory["vocabularies"]
  for key in ("medians", "mean", "scale"):
    np.testing.assert_allclose(streamed[key], in_memory[key], rtol=1e-9)
  proc = run_main(f"--prepared_dir={prepared}", f"--model_dir={model_dir}",
                  "--label_column=is_fraud", *TRAIN[len(COLUMNS):])  # roles: prepared
  assert proc.returncode == 0, proc.stderr
  ours, theirs = (read_json(os.path.join(d, "results.json")) for d in (model_dir, trained))
  assert ours["data"] == theirs["data"]  # the same time split
  assert abs(ours["test"]["auc"] - theirs["test"]["auc"]) <= 0.01, (ours["test"], theirs["test"])


def _refusal_cases(base, path, frame, trained):
  export_dir = os.path.join(trained, "export")
  bad_time = frame.copy()
  bad_time.loc[17, "timestamp"] = "yesterday"
  text_amount = frame.drop(columns=["is_fraud"]).astype({"amount": object})
  text_amount.loc[4, "amount"] = "a lot"
  no_country = frame.drop(columns=["is_fraud", "country"])
  for name, f in (("bad_time", bad_time), ("text_amount", text_amount),
                  ("no_country", no_country)):
    f.to_csv(base / f"{name}.csv", index=False)
  out = str(base / "never.csv")
  return {
      "an ID column not named": (
          [f"--data_path={path}", *[f for f in TRAIN if not f.startswith("--id_columns")]],
          "column 'transaction_id' holds 20000 distinct strings in 20000 non-empty rows: an "
          "identifier, not a category; pass --id_columns=transaction_id"),
      "a vocabulary too large to count": (
          [f"--data_path={path}", *TRAIN, "--max_distinct_values=5"],
          "categorical column 'merchant_category' has more than 5 distinct values"),
      "a time split without a time column": (
          [f"--data_path={path}", *[f for f in TRAIN if not f.startswith("--time_column")]],
          "--split=time needs --time_column"),
      "an unparseable time": (
          [f"--data_path={base / 'bad_time.csv'}", *TRAIN],
          "time column 'timestamp' has 1 empty or unparseable value(s), e.g. 'yesterday' in "
          "data row 17"),
      "text in a numeric column at predict": (
          ["--mode=predict", f"--export_dir={export_dir}", f"--output={out}",
           f"--data_path={base / 'text_amount.csv'}"],
          "column 'amount' was numeric in training but holds text here, e.g. 'a lot' in data "
          "row 4"),
      "a missing column at predict": (
          ["--mode=predict", f"--export_dir={export_dir}", f"--output={out}",
           f"--data_path={base / 'no_country.csv'}"],
          "missing feature column(s): country"),
  }


REFUSALS = ["an ID column not named", "a vocabulary too large to count",
            "a time split without a time column", "an unparseable time",
            "text in a numeric column at predict", "a missing column at predict"]


@pytest.mark.parametrize("name", REFUSALS)
def test_refusals_are_one_line_and_touch_nothing(table, trained, name):
  base, path, frame = table
  cases = _refusal_cases(base, path, frame, trained)
  assert list(cases) == REFUSALS
  flags, message = cases[name]
  before = _snapshot(trained)
  proc = run_main(*flags, f"--model_dir={trained}")
  assert proc.returncode == 2, (name, proc.stdout[-2000:], proc.stderr)
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert message in lines[0], lines[0]
  assert _snapshot(trained) == before
  assert not os.path.exists(base / "never.csv")
