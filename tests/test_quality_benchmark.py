"""The quality benchmark's pure parts: the weighted AP and its paired bootstrap, the oracle, the
generated tables' shapes, the split shared by every contender, and the peers' features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from benchmarks import peers, quality, tables
from tests import transactions as generators


def _scores(rng, n=2_000, rate=0.05, signal=1.5):
  y = (rng.random(n) < rate).astype(np.int64)
  y[:2] = (0, 1)
  return y, rng.normal(0, 1, n) + signal * y


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_ap_is_sklearns_with_sample_weights(ties):
  rng = np.random.default_rng(0)
  y, p = _scores(rng)
  if ties:
    p = np.round(p, 1)  # Runs of equal scores, flagged together.
  w = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
  order, ends = quality.ranking(p)
  assert quality.weighted_ap(y, order, ends, w) == pytest.approx(
      skm.average_precision_score(y, p, sample_weight=w), abs=1e-12)
  assert quality.weighted_ap(y, order, ends, np.ones(len(y))) == pytest.approx(
      skm.average_precision_score(y, p), abs=1e-12)


def test_weighted_ap_without_positives_is_nan():
  y = np.array([0, 1, 0, 1])
  order, ends = quality.ranking(np.array([0.1, 0.9, 0.2, 0.8]))
  assert np.isnan(quality.weighted_ap(y, order, ends, np.array([1, 0, 2, 0])))


def test_ranking_marks_the_end_of_each_tie():
  order, ends = quality.ranking(np.array([0.5, 0.9, 0.5, 0.1]))
  assert order.tolist() == [1, 0, 2, 3]
  assert ends.tolist() == [0, 2, 3]


def test_paired_bootstrap():
  rng = np.random.default_rng(1)
  labels, better, worse, same = [], [], [], []
  for _ in range(2):
    y, p = _scores(rng)
    labels.append(y)
    better.append(p + 1.0 * y)
    worse.append(p)
    same.append(p * 3.0 + 1.0)  # A monotone map: the same ranking, the same AP.
  out = quality.paired_bootstrap(labels, {"peer": worse, "better": better, "same": same},
                                 "peer", resamples=200, seed=0)
  assert set(out) == {"better", "same"}
  per_seed = [skm.average_precision_score(y, b) - skm.average_precision_score(y, w)
              for y, b, w in zip(labels, better, worse)]
  assert out["better"]["per_seed"] == pytest.approx(per_seed)
  assert out["better"]["mean"] == pytest.approx(np.mean(per_seed))
  assert 0 < out["better"]["low"] < out["better"]["mean"] < out["better"]["high"]
  # Paired: both contenders see the same resample, so an equal ranking differs by exactly 0.
  assert out["same"]["low"] == out["same"]["high"] == out["same"]["mean"] == 0.0
  again = quality.paired_bootstrap(labels, {"peer": worse, "better": better}, "peer",
                                   resamples=200, seed=0)
  assert again["better"] == out["better"]  # Deterministic in the seed.


def test_metrics():
  y = np.array([0, 0, 0, 1, 1])
  m = quality.metrics(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
  assert m == {"ap": 1.0, "roc_auc": 1.0, "recall_at_fpr_0.01": 1.0}


@pytest.mark.parametrize("name", sorted(generators.GENERATORS))
def test_generated_tables(name):
  make = generators.GENERATORS[name]
  with_p = make(3_000, 0, true_probability=True)
  plain = make(3_000, 0)
  # The oracle's columns are added after the label, and drawing them changes no other value.
  hidden = [generators.TRUE_PROBABILITY]
  if name == "merchants":
    hidden.append(generators.TRUE_MERCHANT_RISK)
  assert list(with_p.columns) == list(plain.columns) + hidden
  pd.testing.assert_frame_equal(with_p[plain.columns], plain)
  pd.testing.assert_frame_equal(make(3_000, 0), plain)
  assert not make(3_000, 1).equals(plain)
  p = with_p[generators.TRUE_PROBABILITY].to_numpy()
  assert ((p > 0) & (p < 1)).all()
  # The label is drawn from it: the mean probability is the fraud rate, and it ranks frauds.
  rate = with_p["is_fraud"].mean()
  assert 0.005 < rate < 0.04 and abs(p.mean() - rate) < 0.01
  assert skm.roc_auc_score(with_p["is_fraud"], p) > 0.8
  assert with_p.isna().any().sum() >= 2  # Gaps in at least two columns.


def test_merchants_shape():
  frame = generators.merchants(20_000, 0)
  counts = frame["merchant_id"].value_counts()
  assert len(counts) > 2_000 and (counts < 5).sum() > 1_000  # Many merchants, most rare.
  assert frame["transaction_id"].is_unique
  assert frame["event_time"].dtype == np.int64
  assert not frame["event_time"].is_monotonic_increasing
  hour = (frame["event_time"] % 86_400) // 3_600
  night = frame[hour < 6]
  large = night["amount"] > night["amount"].median() * 4
  assert night.loc[large, "is_fraud"].mean() > 2 * frame["is_fraud"].mean()


@pytest.fixture(scope="module")
def merchant_table(tmp_path_factory):
  return tables.make("merchants", str(tmp_path_factory.mktemp("tables")), rows=5_000)


def test_make_keeps_the_true_probability_out_of_the_csv(merchant_table):
  frame = pd.read_csv(merchant_table.path)
  assert generators.TRUE_PROBABILITY not in frame.columns
  assert generators.TRUE_MERCHANT_RISK not in frame.columns
  assert len(merchant_table.true_probability) == len(frame) == 5_000
  assert merchant_table.flags() == [
      f"--data_path={merchant_table.path}", "--label_column=is_fraud",
      "--id_columns=transaction_id", "--time_column=event_time", "--split=time"]


def test_split_is_the_engines(merchant_table):
  from engine.config import Config
  from input_pipeline import preprocessing, sources
  split = tables.split(merchant_table, seed=3)
  config = Config(seed=3, data_path=merchant_table.path, **merchant_table.fields)
  splits = preprocessing.split_and_encode(sources.load_frame(config)[0], config)
  for k, y in enumerate((splits.y_train, splits.y_val, splits.y_test)):
    np.testing.assert_array_equal(split.labels(k), y)
  assert len(split.test_positions()) == 1_000
  # The time split: the test rows are the last in time.
  times = pd.read_csv(merchant_table.path)["event_time"].to_numpy()
  assert times[split.test_positions()].min() >= times[split.positions[split.split < 2]].max()


def test_random_split_follows_the_seed(tmp_path):
  frame = generators.merchants(2_000, 0)
  path = tmp_path / "m.csv"
  frame.to_csv(path, index=False)
  table = tables.Table("m", str(path), {"label_column": "is_fraud",
                                        "id_columns": ("transaction_id",)})
  a, b = tables.split(table, 0), tables.split(table, 1)
  assert not np.array_equal(a.test_positions(), b.test_positions())
  assert a.labels(2).sum() == b.labels(2).sum()  # Stratified: the same count of frauds.


def test_peer_features(merchant_table):
  split = tables.split(merchant_table, seed=0)
  x, categorical = peers.features(split)
  assert categorical == ["merchant_id", "channel"]
  assert list(x.columns) == ["amount", "tenure_days", "merchant_id", "channel", "hour_sin",
                             "hour_cos", "weekday_sin", "weekday_cos"]
  assert len(x) == len(split.positions)
  # Levels come from the training rows only; a gap is missing, not a level.
  train_levels = set(split.rows.categorical[0][split.split == 0]) - {""}
  assert set(x["merchant_id"].cat.categories) == train_levels
  assert x["channel"].isna().any() and "" not in x["channel"].cat.categories
  hour = (pd.read_csv(merchant_table.path)["event_time"] % 86_400) / 3_600
  np.testing.assert_allclose(x["hour_sin"], np.sin(2 * np.pi * hour / 24), atol=1e-9)


def test_cli_rejects_unknown_names():
  with pytest.raises(SystemExit):
    quality.parse_args(["--tables=creditcard,nope"])
  with pytest.raises(SystemExit):
    quality.parse_args(["--peers=xgboost,randomforest"])
  with pytest.raises(SystemExit):
    quality.parse_args(["--config", "no-equals-sign"])
  with pytest.raises(SystemExit):
    quality.parse_args(["--defaults=headline,fastest"])
  assert quality.parse_args(["--defaults="]).defaults == ""
  args = quality.parse_args(["--config", "wide=--hidden_units=256,256 --ensemble=8"])
  assert args.config == ["wide=--hidden_units=256,256 --ensemble=8"]


def test_markdown_has_a_section_per_table():
  run = {"seed": 0, "ap": 0.5, "roc_auc": 0.9, "recall_at_fpr_0.01": 0.4, "wall_seconds": 3.0}
  mean = {k: v for k, v in run.items() if k != "seed"}
  table = {"rows": 100, "flags": ["--data_path=x", "--split=time"],
           "seeds": [{"seed": 0, "test_rows": 20, "test_positives": 2}],
           "contenders": {"headline": {"kind": "engine", "flags": ["--strategy=oversample"],
                                       "runs": [run], "mean": mean},
                          "xgboost": {"kind": "peer", "runs": [run], "mean": mean}},
           "oracle_mean": {"ap": 0.6, "roc_auc": 0.95, "recall_at_fpr_0.01": 0.5},
           "best_peer": "xgboost",
           "paired_to_best_peer": {"headline": {"per_seed": [0.0], "mean": 0.0, "low": -0.1,
                                                "high": 0.1}}}
  text = quality.markdown({"started": "now", "machine": "m", "seeds": [0], "bootstrap": 10,
                           "tables": {"merchants": table, "creditcard": dict(table)}})
  assert text.count("### ") == 2
  assert "Oracle (the true fraud probability): test AP 0.6000" in text
  assert "| headline | +0.0000 | +0.0000 | [-0.1000, +0.1000] |" in text
  assert "--data_path" not in text
