"""Cyclical time features: the formula, its TensorFlow twin, and their place in the features."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from engine.config import Config
from input_pipeline import preprocessing, time_features

MONDAY = pd.Timestamp("2024-01-01T00:00:00Z").timestamp()  # 2024-01-01 was a Monday


@pytest.mark.parametrize("offset,expected", [
    (0.0, [0.0, 1.0, 0.0, 1.0]),                 # Monday midnight: both phases 0
    (6 * 3600.0, [1.0, 0.0, None, None]),        # 06:00: a quarter of the day
    (18 * 3600.0, [-1.0, 0.0, None, None]),      # 18:00: three quarters
    (3.5 * 86400, [0.0, -1.0, 0.0, -1.0]),       # Thursday noon: half the day, half the week
    (7 * 86400.0, [0.0, 1.0, 0.0, 1.0]),         # a week later: the same point
])
def test_the_phases_of_day_and_week(offset, expected):
  got = time_features.derive(np.array([MONDAY + offset]))[0]
  for g, e in zip(got, expected):
    if e is not None:
      assert g == pytest.approx(e, abs=1e-9)


def test_the_tensorflow_twin_gives_the_same_numbers():
  seconds = np.random.default_rng(0).uniform(0, 4e9, 1000)
  np.testing.assert_allclose(time_features.derive_tf(tf.constant(seconds)).numpy(),
                             time_features.derive(seconds), rtol=0, atol=1e-9)


def test_a_time_column_adds_its_features_unless_turned_off():
  rng = np.random.default_rng(1)
  n = 2000
  frame = pd.DataFrame({"t": MONDAY + rng.uniform(0, 30 * 86400, n), "x": rng.normal(size=n),
                        "y": (rng.random(n) < 0.05).astype(int)})
  config = Config(label_column="y", time_column="t", split="time")
  pre = preprocessing.split_and_encode(frame, config).preprocessor
  assert pre.time_features == [f"t {n}" for n in time_features.NAMES]
  assert pre.numeric_features == ["x", *pre.time_features] and pre.raw_columns == ["x", "t"]
  off = preprocessing.split_and_encode(frame, config.replace(time_features=False)).preprocessor
  assert off.time_features == [] and off.raw_columns == ["x"]
