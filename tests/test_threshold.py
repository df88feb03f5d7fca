import numpy as np
import pytest

from engine import threshold
from engine.config import Config

# Ten positives scored 0.95, 0.9, ..., 0.5; ten negatives scored 0.05, 0.1, ..., 0.5.
POS = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5])
NEG = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5])
Y = np.r_[np.ones(10), np.zeros(10)].astype(int)
P = np.r_[POS, NEG]


@pytest.mark.parametrize("target,expected", [
    (0.1, 0.95),    # one positive is enough
    (0.15, 0.9),    # 1.5 positives -> 2
    (0.9, 0.55),    # exactly 9 of 10: float 0.9 * 10 must not round up to 10
    (0.91, 0.5),
    (1.0, 0.5),
])
def test_for_recall_is_the_highest_threshold_reaching_the_target(target, expected):
  t = threshold.for_recall(Y, P, target)
  assert t == pytest.approx(expected)
  assert threshold.confusion(Y, P, t)["recall"] >= target
  # Any higher threshold misses the target.
  assert threshold.confusion(Y, P, np.nextafter(t, 1.0))["recall"] < target


def test_for_recall_without_positives_fails():
  with pytest.raises(ValueError, match="no positive"):
    threshold.for_recall(np.zeros(3), np.array([0.1, 0.2, 0.3]), 0.9)


def brute_force_cost(y, p, fp_cost, fn_cost):
  candidates = sorted(set(p.tolist()) | {1.1}, reverse=True)
  costs = []
  for t in candidates:
    c = threshold.confusion(y, p, t)
    costs.append(fp_cost * c["fp"] + fn_cost * c["fn"])
  return candidates[int(np.argmin(costs))], min(costs)


@pytest.mark.parametrize("fp_cost,fn_cost", [(1, 1), (1, 10), (10, 1), (0, 1), (1, 0),
                                             (1, 100)])
def test_for_cost_matches_brute_force(fp_cost, fn_cost):
  rng = np.random.default_rng(fp_cost * 7 + fn_cost)
  y = (rng.random(300) < 0.1).astype(int)
  p = np.round(np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1), 2)  # rounding makes ties
  t = threshold.for_cost(y, p, fp_cost=fp_cost, fn_cost=fn_cost)
  c = threshold.confusion(y, p, t)
  best_t, best_cost = brute_force_cost(y, p, fp_cost, fn_cost)
  assert fp_cost * c["fp"] + fn_cost * c["fn"] == best_cost
  if best_t <= 1.0:
    assert t == best_t  # the highest threshold among equal costs
  else:
    assert c["tp"] + c["fp"] == 0  # flag nothing


def test_confusion_edges():
  c = threshold.confusion(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.49, 0.1]), 0.5)
  assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (1, 1, 1, 1)  # >= threshold is flagged
  none = threshold.confusion(np.array([1, 0]), np.array([0.1, 0.2]), 0.9)
  assert none["precision"] == 0.0 and none["recall"] == 0.0


@pytest.mark.parametrize("kwargs,keys", [
    ({"target_recall": 0.8}, {"target_recall"}),
    ({"fp_cost": 1.0, "fn_cost": 50.0}, {"fp_cost", "fn_cost"}),
])
def test_choose_reports_validation_and_test(kwargs, keys):
  out = threshold.choose(Config(**kwargs), val_labels=Y, val_probabilities=P, test_labels=Y,
                         test_probabilities=P * 0.9)
  assert keys <= set(out)
  for split in ("validation", "test"):
    assert set(out[split]) == {"tp", "fp", "tn", "fn", "precision", "recall"}
  if "target_recall" in kwargs:
    assert out["value"] == pytest.approx(0.6)
    assert out["validation"]["recall"] == 0.8
    assert out["test"]["recall"] < 0.8  # scores shrank on "test": the chosen threshold misses more


def test_a_threshold_below_the_precision_floor_or_flagging_too_many_rows_is_called_out():
  # 10 frauds caught among 10,000 rows, with 1,990 false alarms: precision 0.005, 20% flagged.
  bad = {"tp": 10, "fp": 1990, "tn": 8000, "fn": 0, "precision": 10 / 2000, "recall": 1.0}
  warnings = threshold.warnings_for(bad)
  assert len(warnings) == 2
  assert "precision 0.0050 is below 0.01" in warnings[0]
  assert "1990 false alarms" in warnings[0]
  assert "20.0% of validation rows" in warnings[1]
  good = {"tp": 9, "fp": 20, "tn": 9970, "fn": 1, "precision": 9 / 29, "recall": 0.9}
  assert threshold.warnings_for(good) == []
  chosen = threshold.choose(Config(target_recall=0.9), val_labels=Y, val_probabilities=P,
                            test_labels=Y, test_probabilities=P)
  # Half the rows flagged on this toy set: the report says so.
  assert chosen["warnings"] == [w for w in chosen["warnings"] if "of validation rows" in w] != []
