"""The frequency and out-of-fold fraud-rate features of high-cardinality categories: what they
compute, that training rows never see their own label, that the export and the prepared path
read them as the in-memory path does."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from engine import evaluation, export
from engine.config import Config
from input_pipeline import category_stats, category_usual, layout, preprocessing
from tests.builders import build_model
from tests.conftest import read_json, run_main
from tests.transactions import merchants

ROWS = 20_000
COLUMNS = ("--label_column=is_fraud", "--id_columns=transaction_id", "--time_column=event_time",
           "--split=time")
CONFIG = Config(label_column="is_fraud", id_columns=("transaction_id",),
                time_column="event_time", split="time")


@pytest.fixture(scope="module")
def frame():
  return merchants(ROWS, seed=0)


@pytest.fixture(scope="module")
def splits(frame):
  return preprocessing.split_and_encode(frame, CONFIG)


def _tiny():
  """12 training-size rows: value "a" 6 rows 3 frauds, "b" 5 rows 0 frauds, "c" once, a fraud."""
  values = ["a"] * 6 + ["b"] * 5 + ["c"]
  labels = [1, 1, 1, 0, 0, 0] + [0] * 5 + [1]
  return pd.DataFrame({"x": np.arange(12.0), "m": values, "y": labels})


def test_auto_adds_the_features_to_the_high_cardinality_column_only(splits):
  pre = splits.preprocessor
  assert [c["column"] for c in pre.stats["columns"]] == ["merchant_id"]  # not channel
  usual = [f"merchant_id vs usual {f}" for f in pre.numeric_features]
  assert "amount" in pre.numeric_features
  assert pre.feature_names[-2 - len(usual):] == [
      "merchant_id log count", "merchant_id fraud rate", *usual]
  lay = layout.from_preprocessor(pre)
  assert set(lay.numeric) >= set(range(lay.num_features - 2 - len(usual), lay.num_features))
  off = preprocessing.split_and_encode(merchants(ROWS, seed=0),
                                       CONFIG.replace(category_stats="off"))
  assert off.preprocessor.stats is None
  assert off.num_features == splits.num_features - 2 - len(usual)
  plain = preprocessing.split_and_encode(merchants(ROWS, seed=0),
                                         CONFIG.replace(category_deviations=False))
  assert plain.num_features == splits.num_features - len(usual)


def test_the_features_are_the_smoothed_counts_standardised_over_training_rows():
  stats = category_stats.StatsFitter(["m"], seed=0)
  frame = _tiny()
  index = np.arange(12)
  stats.update(index, [frame["m"].to_numpy(object)], frame["y"].to_numpy())
  fitted = stats.finish(["m"], clip=50.0)
  assert fitted.prior == pytest.approx(4 / 12)
  assert fitted.columns[0].values == ["a", "b", "c"]
  # Whole-split features of rows that are not training rows: "b" and an unseen value.
  logit = lambda p: np.log(p / (1 - p))  # noqa: E731
  raw = np.array([[np.log1p(5), logit((0 + 20 / 3) / (5 + 20))],
                  [0.0, logit(1 / 3)]])
  c = fitted.columns[0]
  expected = (raw - np.array(c.mean)) / np.array(c.scale)
  got = fitted.encode({"m": np.array(["b", "zz"], object)})
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # Over the training rows, as encoded (out of fold), each feature has mean 0 and sd 1.
  train = fitted.encode({"m": frame["m"].to_numpy(object)}, index, np.ones(12, bool))
  np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-6)
  np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)


def test_a_training_row_does_not_see_its_own_label():
  """"c" occurs once, as a fraud: its training row's rate must be the prior's (no other row of
  "c"), while a new row of "c" gets the rate its one fraud gives."""
  stats = category_stats.StatsFitter(["m"], seed=0)
  frame = _tiny()
  index = np.arange(12)
  stats.update(index, [frame["m"].to_numpy(object)], frame["y"].to_numpy())
  fitted = stats.finish(["m"], clip=50.0)
  c = fitted.columns[0]
  unseen = fitted.encode({"m": np.array(["zz"], object)})[0, 1]
  own = fitted.encode({"m": np.array(["c"], object)}, index[-1:], np.ones(1, bool))[0, 1]
  new = fitted.encode({"m": np.array(["c"], object)})[0, 1]
  assert own == pytest.approx(unseen)
  assert new > unseen + 0.1 / c.scale[1]
  # And the rate of each training row of "a" counts only the other folds' rows of "a".
  fold = category_stats.folds(index[:6], seed=0)
  rows_a = np.bincount(fold, minlength=category_stats.FOLDS)
  pos_a = np.bincount(fold, weights=frame["y"][:6], minlength=category_stats.FOLDS)
  other = (3 - pos_a[fold] + 20 / 3) / (6 - rows_a[fold] + 20)
  expected = (np.log(other / (1 - other)) - c.mean[1]) / c.scale[1]
  got = fitted.encode({"m": frame["m"][:6].to_numpy(object)}, index[:6], np.ones(6, bool))
  np.testing.assert_allclose(got[:, 1], expected, rtol=1e-6)


def test_the_rate_tells_risky_merchants_apart_on_unseen_rows(frame, splits):
  """On the validation rows (no statistic fitted on them) the rate feature alone ranks fraud
  well above chance, and better than the one-hot block's out-of-vocabulary bucket can."""
  rate = splits.x_val[:, splits.preprocessor.feature_names.index("merchant_id fraud rate")]
  auc, _ = evaluation.roc_auc_and_average_precision(splits.y_val, rate)
  assert auc > 0.65, auc


def test_the_export_reads_the_features_as_training_does(frame, splits, tmp_path):
  """Raw rows with an unseen merchant and a gap: the served score equals the in-process
  model's on the numpy features, and the features depend on the merchant."""
  raw = frame.drop(columns=["is_fraud"]).copy()
  raw.loc[0, "merchant_id"] = "M-never-seen"
  raw.loc[1, "merchant_id"] = np.nan
  model = build_model(CONFIG.replace(hidden_units=(16,)), num_features=splits.num_features,
                      output_bias=-3.0)
  features = splits.preprocessor(raw)
  in_process = evaluation.predict_probabilities(model, features)
  path = export.export_model(model, splits.preprocessor, threshold={"value": 0.5},
                             export_dir=str(tmp_path / "export"))
  served, _ = export.ExportedModel(path).score(raw.sample(frac=1.0, axis=1, random_state=0))
  np.testing.assert_allclose(served, in_process, rtol=0, atol=1e-6)
  names = splits.preprocessor.feature_names
  count, rate, deviation = (names.index(f"merchant_id {n}")
                            for n in ("log count", "fraud rate", "vs usual amount"))
  assert len(np.unique(features[:, rate])) > 50  # many merchants' own rates
  unseen = category_stats.CategoryStats.from_dict(splits.preprocessor.stats).table(0)[-1]
  np.testing.assert_allclose(features[0, [count, rate]], unseen)
  assert len(np.unique(features[:, deviation])) > 100


def test_prepared_statistics_equal_the_in_memory_ones(frame, tmp_path):
  path = tmp_path / "merchants.csv"
  frame.to_csv(path, index=False)
  prepared = str(tmp_path / "prepared")
  proc = run_main("--mode=prepare", f"--data_path={path}", f"--output_dir={prepared}",
                  "--prepare_chunk_rows=3000", "--prepare_shards=2", *COLUMNS)
  assert proc.returncode == 0, proc.stderr
  streamed = read_json(os.path.join(prepared, "metadata.json"))["preprocessing"]
  in_memory = preprocessing.split_and_encode(pd.read_csv(path), CONFIG).preprocessor
  assert streamed["feature_names"] == in_memory.feature_names
  assert streamed["stats"]["columns"][0]["values"] == in_memory.stats["columns"][0]["values"]
  assert streamed["stats"]["columns"][0]["rows"] == in_memory.stats["columns"][0]["rows"]
  np.testing.assert_allclose(streamed["stats"]["columns"][0]["mean"],
                             in_memory.stats["columns"][0]["mean"], rtol=1e-12)
  for key in ("sums", "counts", "mean", "scale"):
    np.testing.assert_allclose(np.asarray(streamed["stats"]["usual"][key], np.float64),
                               np.asarray(in_memory.stats["usual"][key], np.float64),
                               rtol=1e-9, atol=1e-9)


def test_a_row_is_measured_against_its_values_usual_one_without_itself():
  """Three rows of merchant a (amounts 1, 10, 100) and one of b: a training row's usual amount
  leaves the row out; a served row of a counts all three; an unseen value reads the mean."""
  fitter = category_stats.StatsFitter(["m"], seed=0, numeric=["amount"])
  m = np.array(["a", "a", "a", "b"], object)
  amount = np.array([[1.0], [10.0], [100.0], [np.nan]])
  fitter.update(np.arange(4), [m], np.array([0, 0, 1, 0]), amount)
  stats = fitter.finish(["m"], clip=5.0)
  assert stats.names()[-1] == "m vs usual amount"
  s = np.log1p(amount[:3, 0])
  mean, sd = s.mean(), s.std()
  prior = stats.usual.pseudo_rows(0)[0]
  loo = [(s.sum() - v + prior * mean) / (2 + prior) for v in s]
  got = stats.encode({"m": m}, np.arange(4), np.ones(4, bool), amount)[:, -1]
  np.testing.assert_allclose(got[:3], (s - loo) / sd, rtol=1e-6)
  assert got[3] == 0.0  # a gap
  served = stats.encode({"m": np.array(["a", "zz"], object)}, cleaned=np.array([[50.0], [50.0]]))
  usual_a = (s.sum() + prior * mean) / (3 + prior)
  np.testing.assert_allclose(served[:, -1], (np.log1p(50.0) - [usual_a, mean]) / sd, rtol=1e-6)


def _value_rows(rng, means, rows_each, within_sd):
  """Rows of values 0..len(means)-1, `rows_each` of each, s ~ N(mean, within_sd)."""
  values = np.repeat(np.arange(len(means)), rows_each)
  return values.astype(str).astype(object), means[values] + rng.normal(0, within_sd, len(values))


def test_the_pseudo_rows_are_the_within_over_the_between_variance():
  """Value means drawn with sd b and rows with sd w around them: the fitted k is w^2 / b^2,
  unequal counts and all; values that do not differ get the upper bound, and a k below one
  is raised to one."""
  rng = np.random.default_rng(0)
  counts = rng.integers(1, 30, 3000)
  for w, b, expected in [(1.0, 0.5, 4.0), (1.0, 0.25, 16.0), (0.5, 1.0, 1.0)]:
    ids = np.repeat(np.arange(len(counts)), counts)
    s = rng.normal(3.0, b, len(counts))[ids] + rng.normal(0.0, w, len(ids))
    sums, squares = np.bincount(ids, s)[:, None], np.bincount(ids, s * s)[:, None]
    k = category_usual.fit_pseudo_rows(sums, counts[:, None].astype(float), squares)
    assert k[0] == pytest.approx(expected, rel=0.15)
  same = np.ones((5, 1))
  assert category_usual.fit_pseudo_rows(same * 2.0, same * 2, same * 2.0)[0] == \
      category_usual.MAX_PRIOR_ROWS


def test_a_value_of_its_own_kind_is_judged_against_its_own_rows():
  """Merchants whose usual tickets differ widely (k at its lower bound): a served amount at the
  most unusual merchant's own mean reads as nearly usual (with k = 20 it would read as 0.8 of
  its distance from the overall mean); merchants that do not differ get a k far above their
  5 rows each. The fit travels in the export's dict, and the TensorFlow twin reads the same."""
  import tensorflow as tf
  rng = np.random.default_rng(1)
  fitted = {}
  for name, spread in (("differ", 3.0), ("alike", 0.0)):
    m, s = _value_rows(rng, 3.0 + spread * rng.standard_normal(1000), 5, 0.3)
    fitter = category_stats.StatsFitter(["m"], seed=0, numeric=["amount"])
    fitter.update(np.arange(len(m)), [m], np.arange(len(m)) % 10 == 0, np.expm1(s)[:, None])
    stats = category_stats.CategoryStats.from_dict(fitter.finish(["m"], clip=50.0).to_dict())
    fitted[name] = stats.usual.pseudo_rows(0)[0]
    if name == "differ":
      means = {v: s[m == v].mean() for v in np.unique(m)}
      value = max(means, key=lambda v: abs(means[v] - s.mean()))
      cleaned = np.array([[np.expm1(means[value])]])
      served = stats.encode({"m": np.array([value], object)}, cleaned=cleaned)[0, -1]
      distance = (means[value] - s.mean()) / stats.usual.scale[0]
      assert abs(served) < 0.25 * abs(distance)
      ids = [tf.constant([stats.columns[0].values.index(value)], tf.int64)]
      twin = stats.usual.tf_features(ids, tf.constant(cleaned)).numpy()[0, -1]
      assert twin == pytest.approx(served, abs=1e-5)
  assert fitted["differ"] == category_usual.MIN_PRIOR_ROWS
  assert fitted["alike"] > 25
