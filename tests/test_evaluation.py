import numpy as np
import pytest
from sklearn import metrics as skm

from engine import evaluation


def _cases():
  rng = np.random.default_rng(0)
  for trial in range(60):
    n = int(rng.integers(2, 3000))
    y = (rng.random(n) < rng.uniform(0.002, 0.5)).astype(np.int64)
    y[0], y[-1] = 0, 1  # both classes
    p = rng.random(n)
    if trial % 3 == 0:
      p = np.round(p, 1)  # heavy ties, across classes
    elif trial % 3 == 1:
      p = np.round(p, 3)
    yield y, p


@pytest.mark.parametrize("y, p", list(_cases()))
def test_auc_and_average_precision_equal_sklearn(y, p):
  auc, ap = evaluation.roc_auc_and_average_precision(y, p)
  assert auc == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
  assert ap == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_known_values():
  # Perfect ranking, reversed ranking, and all scores tied.
  y = np.array([0, 0, 1, 1])
  assert evaluation.roc_auc_and_average_precision(y, np.array([.1, .2, .8, .9])) == (1.0, 1.0)
  auc, ap = evaluation.roc_auc_and_average_precision(y, np.array([.9, .8, .2, .1]))
  assert auc == 0.0 and ap == pytest.approx((1 / 3 + 2 / 4) / 2)
  assert evaluation.roc_auc_and_average_precision(y, np.full(4, 0.5)) == (0.5, 0.5)


def test_exact_metrics_with_one_class_has_no_auc():
  m = evaluation.exact_metrics(np.zeros(5), np.linspace(0.1, 0.9, 5))
  assert np.isnan(m["auc"]) and np.isnan(m["prc"])
  assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (0, 3, 2, 0)


def test_exact_areas_use_unclipped_scores_where_they_saturate():
  # Scores saturated beyond the log loss's clip (1e-7): clipping them would tie them and change
  # the ranking the areas measure (0.9038 against sklearn's 0.9024 in the case that found it).
  rng = np.random.default_rng(3)
  y = (rng.random(4000) < 0.05).astype(np.int64)
  y[:2] = [0, 1]
  logits = np.where(y == 1, rng.normal(18, 6, 4000), rng.normal(-18, 10, 4000))
  p = 1 / (1 + np.exp(-logits))
  assert (p > 1 - 1e-7).sum() > 100 and (p < 1e-7).sum() > 100  # saturated on both ends
  m = evaluation.exact_metrics(y, p)
  assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
  assert m["prc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-9)
  assert np.isfinite(m["loss"])
