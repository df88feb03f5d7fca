"""The PR curve written for TensorBoard: points where the scores are, not evenly spaced."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.pr_curve import summary as pr_summary

from engine.summaries import Summaries, pr_points


def _crowded(seed=0):
  """An oversampled model's scores: 50 frauds all scored above 0.999, 20,000 rows."""
  rng = np.random.default_rng(seed)
  y = np.r_[np.ones(50), np.zeros(19_950)].astype(int)
  p = np.r_[1 - rng.uniform(0, 1e-3, 50), rng.beta(0.5, 20, 19_950)]
  p[50:60] = 0.9995  # A few negatives up there too.
  return y, p


def test_the_curve_spans_recall_from_the_first_fraud_to_all_of_them():
  y, p = _crowded()
  tp, fp, tn, fn = pr_points(y, p, max_points=256)
  recall = tp / (tp + fn)
  assert len(tp) <= 256
  assert recall.min() == pytest.approx(1 / 50) and recall.max() == 1.0
  assert np.all(np.diff(tp) <= 0) and np.all(np.diff(fp) <= 0)  # Increasing threshold.
  assert np.all(tp + fp + tn + fn == len(y))
  # Every point is an exact confusion at one of the scores.
  for k in (0, len(tp) // 2, len(tp) - 1):
    t = np.sort(p)[::-1][int(tp[k] + fp[k]) - 1]
    assert tp[k] == np.sum((p >= t) & (y == 1)) and fp[k] == np.sum((p >= t) & (y == 0))
  # Evenly spaced thresholds, as the plugin's own `pb` takes them, show only the top of recall.
  even = pr_summary.pb("even", labels=y.astype(bool), predictions=p.astype(np.float32),
                       num_thresholds=201)
  data = np.frombuffer(even.value[0].tensor.tensor_content, np.float32).reshape(6, -1)
  caught = data[0] > 0
  assert data[5][caught].min() > 0.5


def test_summaries_write_it_for_the_pr_curves_dashboard(tmp_path):
  y, p = _crowded(1)
  summaries = Summaries(str(tmp_path))
  summaries.pr_curve("test", "pr_curve", y, p, step=3)
  summaries.close()
  acc = EventAccumulator(str(tmp_path / "logs" / "test"), size_guidance={"tensors": 0})
  acc.Reload()
  (event,) = acc.Tensors("pr_curve/pr_curves")
  data = np.frombuffer(event.tensor_proto.tensor_content, np.float32).reshape(6, -1)
  assert event.step == 3
  assert data[5].min() <= 0.1 and data[5].max() == 1.0
