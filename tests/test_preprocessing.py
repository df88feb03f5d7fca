import logging

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from engine.config import Config
from input_pipeline import columns, preprocessing, time_features
from input_pipeline.errors import DataError
from tests.conftest import small_frame


@pytest.mark.parametrize("values,expected", [
    ([0, 1, 1], [0, 1, 1]),
    ([0.0, 1.0], [0, 1]),
    (["true", "False", "TRUE"], [1, 0, 1]),
    (["0", "1"], [0, 1]),
    ([True, False], [1, 0]),
])
def test_parse_labels_accepts_binary_forms(values, expected):
  assert preprocessing.parse_labels(pd.Series(values), "y").tolist() == expected


@pytest.mark.parametrize("values,message", [
    ([0, 1, 2], "other values"),
    ([0, -1], "other values"),
    ([0.0, 0.5], "other values"),
    (["yes!", "no"], "other values"),
    ([0, None], "empty"),
])
def test_parse_labels_refuses_others(values, message):
  with pytest.raises(DataError, match=message):
    preprocessing.parse_labels(pd.Series(values), "y")


def _rows(frame, drop=False, **config):
  config = Config(**config)
  roles = columns.assign_roles(frame, config)
  return columns.read_rows(frame, roles, drop_invalid_rows=drop)


def test_row_checks_errors():
  frame = small_frame(200, 10)
  with pytest.raises(DataError, match="label column 'label' not found"):
    _rows(frame, label_column="label")
  text = frame.copy()
  text["V3"] = text["V3"].astype(object)
  text.loc[5, "V3"] = "abc"
  with pytest.raises(DataError, match="feature column 'V3' holds 1 value.*not numbers, e.g. "
                     "'abc' in data row 5.*--categorical_columns=V3"):
    _rows(text)
  one_class = frame.assign(Class=0)
  with pytest.raises(DataError, match="only class 0"):
    _rows(one_class)


def test_gaps_are_kept_and_inf_rows_are_refused_or_dropped():
  frame = small_frame(200, 10)
  frame.loc[3, "V1"] = np.nan
  frame.loc[4, "V2"] = np.inf
  with pytest.raises(DataError, match=r"1 row\(s\) have Inf features, e.g. column 'V2' in "
                     "data row 4"):
    _rows(frame)
  rows = _rows(frame, drop=True)
  assert len(rows.labels) == len(rows.numeric) == 199
  assert np.isnan(rows.numeric).sum() == 1  # the gap stays, to be filled by the median


@pytest.mark.parametrize("positives,ok", [(2, False), (3, False), (4, True), (10, True)])
def test_stratified_split_needs_a_positive_in_every_split(positives, ok):
  labels = np.zeros(1000, np.int64)
  labels[:positives] = 1
  kwargs = dict(validation_fraction=0.16, test_fraction=0.2, seed=0)
  if not ok:
    with pytest.raises(DataError, match="too few to stratify"):
      preprocessing.stratified_split(labels, **kwargs)
    return
  train, val, test = preprocessing.stratified_split(labels, **kwargs)
  for part in (train, val, test):
    assert labels[part].sum() >= 1
  all_rows = np.concatenate([train, val, test])
  assert sorted(all_rows.tolist()) == list(range(1000))  # a partition: no row lost or repeated


def test_split_is_stratified_seeded_and_64_16_20():
  labels = np.zeros(10_000, np.int64)
  labels[:100] = 1
  a = preprocessing.stratified_split(labels, validation_fraction=0.16, test_fraction=0.2, seed=1)
  b = preprocessing.stratified_split(labels, validation_fraction=0.16, test_fraction=0.2, seed=1)
  c = preprocessing.stratified_split(labels, validation_fraction=0.16, test_fraction=0.2, seed=2)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not np.array_equal(a[0], c[0])
  assert [len(p) for p in a] == [6400, 1600, 2000]
  assert [int(labels[p].sum()) for p in a] == [64, 16, 20]


def test_prepare_cleans_scales_on_train_only_and_clips():
  frame = small_frame(2000, 40)
  frame.loc[0, "V5"] = 1e6  # an outlier that clipping must bound
  splits = preprocessing.split_and_encode(frame, Config(dataset="synthetic"))
  pre = splits.preprocessor
  # On the credit-card set itself `Time` is the time column: its hour becomes four features.
  assert pre.time_column == "Time" and not pre.drop_time and pre.log_amount
  assert "Time" not in pre.numeric_columns and "Log Amount" in pre.feature_names
  assert pre.feature_names[-4:] == [f"Time {n}" for n in time_features.NAMES]
  assert splits.num_features == 33
  assert np.allclose(splits.x_train.mean(axis=0), 0.0, atol=0.05)
  for x in (splits.x_train, splits.x_val, splits.x_test):
    assert x.dtype == np.float32 and np.abs(x).max() <= 5.0
  # The scaler saw the training rows only: its mean is the training rows' mean, not all rows'.
  times = frame["Time"].to_numpy(np.float64)
  cleaned = pre.clean(frame[pre.numeric_columns].to_numpy(), times)
  train, _, _ = preprocessing.stratified_split(frame["Class"].to_numpy(), validation_fraction=0.16,
                                               test_fraction=0.2, seed=0)
  assert np.allclose(pre.mean, cleaned[train].mean(axis=0))
  assert not np.allclose(pre.mean, cleaned.mean(axis=0))
  # The Amount transform is log(Amount + 0.001).
  amount = frame["Amount"].to_numpy()
  log_amount = cleaned[:, pre.numeric_features.index("Log Amount")]
  assert np.allclose(log_amount, np.log(amount + 0.001))


def test_preprocessor_round_trip_scores_raw_rows(tmp_path):
  frame = small_frame(500, 10)
  splits = preprocessing.split_and_encode(frame, Config(dataset="synthetic"))
  path = tmp_path / "pre.json"
  splits.preprocessor.save(str(path))
  loaded = preprocessing.Preprocessor.load(str(path))
  raw = frame.drop(columns="Class")
  assert np.array_equal(loaded(raw), splits.preprocessor(raw))
  with pytest.raises(DataError, match="missing feature column"):
    loaded(raw.drop(columns="V7"))


def test_generic_csv_without_credit_card_columns():
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300),
                        "is_fraud": (rng.random(300) < 0.1).astype(int)})
  frame.loc[:5, "is_fraud"] = 1
  splits = preprocessing.split_and_encode(frame, Config(label_column="is_fraud"))
  assert splits.preprocessor.feature_names == ["a", "b"]
  assert not splits.preprocessor.drop_time and not splits.preprocessor.log_amount


# The TensorFlow twin of the preprocessing (serving): eager and inside Dataset.map.
def fitted(frame: pd.DataFrame) -> preprocessing.Preprocessor:
  return preprocessing.split_and_encode(frame, Config(clip=2.0)).preprocessor


def raw_rows(frame, pre):
  return {c: frame[c].to_numpy(np.float64) for c in pre.raw_columns}


@pytest.mark.parametrize("columns", [
    None,                      # Time, V1..V28, Amount
    ["V1", "V2", "V3", "Amount"],  # no Time
    ["Time", "V1", "V2"],      # no Amount
    ["V3", "V1"],              # neither, other order
])
def test_tf_preprocessing_matches_numpy_eagerly_and_in_dataset_map(columns):
  frame = small_frame(rows=500, positives=20)
  # Amounts of zero and large ones: the log and the clip must agree at the edges.
  frame.loc[:4, "Amount"] = [0.0, 0.001, 25691.16, 1e-9, 3.5]
  if columns is not None:
    frame = frame[columns + ["Class"]]
  pre = fitted(frame)
  expected = pre(frame)
  assert np.abs(expected).max() == pytest.approx(2.0)  # the clip is exercised
  rows = raw_rows(frame, pre)
  eager = pre.tf_call({c: tf.constant(v) for c, v in rows.items()}).numpy()
  ds = tf.data.Dataset.from_tensor_slices(rows).batch(64).map(pre.tf_call)
  mapped = np.concatenate([b.numpy() for b in ds])
  for got in (eager, mapped):
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("extra,cleaning,cleaned", [
    (False, "auto", True),    # the credit-card set's columns exactly: its own cleaning
    (True, "auto", False),    # a user's table with a Time and an Amount: ordinary features
    (True, "on", True),       # asked for
    (False, "off", False),
])
def test_the_credit_card_cleaning_runs_on_the_set_itself_or_where_asked(caplog, extra, cleaning,
                                                                         cleaned):
  frame = small_frame(rows=600, positives=20)
  if extra:
    frame.insert(1, "merchant_risk", np.linspace(0, 1, len(frame)))
  config = Config(creditcard_cleaning=cleaning)
  with caplog.at_level(logging.INFO):
    pre = preprocessing.split_and_encode(frame, config).preprocessor
  # On the set itself `Time` becomes the time column (the hour a feature); asked for on
  # another table, the cleaning drops it.
  own_set = cleaned and cleaning == "auto"
  assert pre.log_amount == cleaned
  assert pre.time_column == ("Time" if own_set else None)
  assert pre.drop_time == (cleaned and not own_set)
  assert ("Time" in pre.numeric_features) == (not cleaned)
  assert ("Time" in pre.raw_columns) == (not cleaned or own_set)  # the export asks for what it uses
  assert ("Log Amount" in pre.numeric_features) == cleaned
  assert ("Credit-card cleaning" in caplog.text) == cleaned
  x = pre(frame)  # the numpy serving path takes the same columns
  assert x.shape == (len(frame), len(pre.feature_names))


@pytest.mark.parametrize("fields,time_role", [
    ({}, True),                              # the set itself: Time gives the hour of day
    ({"time_features": False}, False),       # no time features: Time is dropped, as before
    ({"creditcard_cleaning": "off"}, False),  # no cleaning: Time is an ordinary feature
    ({"id_columns": ("Time",)}, False),      # a role the user gave wins
])
def test_the_credit_card_sets_time_column_is_its_time_unless_told_otherwise(fields, time_role):
  frame = small_frame(rows=600, positives=20)
  pre = preprocessing.split_and_encode(frame, Config(**fields)).preprocessor
  assert (pre.time_column == "Time") == time_role
  assert ("Time hour_sin" in pre.feature_names) == time_role
  if time_role:  # the serving path derives the same hour features from the raw Time column
    rows = {c: tf.constant(frame[c].to_numpy(np.float64)) for c in pre.raw_columns}
    np.testing.assert_allclose(pre.tf_call(rows).numpy(), pre(frame), rtol=0, atol=1e-6)
