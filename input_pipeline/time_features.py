"""Cyclical time features: the hour of the day and the day of the week, from a time column.

Fraud follows the clock (night-time purchases, weekend patterns) while the raw timestamp only
grows; a model cannot learn a daily cycle from it. Each cycle becomes a point on the unit
circle, (sin, cos) of its phase, so 23:59 sits next to 00:00. Seconds are Unix time for
date-times, or whatever origin a numeric column counts from (the credit-card `Time` counts from
its first transaction): the phase is then shifted, the cycle's shape is not.

One formula in two twins, numpy for training and TensorFlow for serving, equal on equal input.
"""

from __future__ import annotations

import math

import numpy as np

NAMES = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")
DAY = 86_400.0
WEEK = 7 * DAY
# 1970-01-01 was a Thursday: shifting by 3 days puts Monday 00:00 at phase 0.
WEEK_ORIGIN = 3 * DAY


def derive(seconds: np.ndarray) -> np.ndarray:
  """[n] seconds (float64) -> [n, 4] float64: NAMES in order."""
  s = np.asarray(seconds, np.float64)
  day = 2.0 * math.pi * np.mod(s, DAY) / DAY
  week = 2.0 * math.pi * np.mod(s + WEEK_ORIGIN, WEEK) / WEEK
  return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=1)


def derive_tf(seconds):
  """The TensorFlow twin of `derive`, for the export: [n] float64 tensor -> [n, 4] float64."""
  import tensorflow as tf
  s = tf.cast(seconds, tf.float64)
  day = 2.0 * math.pi * tf.math.floormod(s, DAY) / DAY
  week = 2.0 * math.pi * tf.math.floormod(s + WEEK_ORIGIN, WEEK) / WEEK
  return tf.stack([tf.sin(day), tf.cos(day), tf.sin(week), tf.cos(week)], axis=1)
