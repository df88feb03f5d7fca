"""The operating point: the decision threshold a fraud team deploys, chosen on validation.

0.5 is only the right threshold when the model's probabilities are calibrated for the costs at
hand; a model trained on rebalanced data (class weights, oversampling) is not. The threshold is
chosen on the validation split and then reported, untouched, on the test split, so the test
figures are an honest estimate of what the deployed threshold will do.

A row is flagged when `probability >= threshold`.
"""

from __future__ import annotations

import math

import numpy as np


def confusion(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
  """Confusion counts, precision and recall of `probability >= threshold`.

  Args:
    labels: 0/1 labels.
    probabilities: scores in [0, 1], one per label.
    threshold: flag rows whose score is at least this.

  Returns:
    {"tp", "fp", "tn", "fn", "precision", "recall"}; precision is 0 when nothing is flagged.
  """
  y = np.asarray(labels).astype(bool)
  pred = np.asarray(probabilities, np.float64) >= threshold
  tp = int(np.sum(pred & y))
  fp = int(np.sum(pred & ~y))
  fn = int(np.sum(~pred & y))
  tn = int(np.sum(~pred & ~y))
  return {"tp": tp, "fp": fp, "tn": tn, "fn": fn,
          "precision": tp / (tp + fp) if tp + fp else 0.0,
          "recall": tp / (tp + fn) if tp + fn else 0.0}


def for_recall(labels: np.ndarray, probabilities: np.ndarray, target_recall: float) -> float:
  """The highest threshold whose recall on (labels, probabilities) is at least target_recall.

  With the positives' scores sorted from high to low, flagging the k = ceil(target * positives)
  best-scored positives needs a threshold no higher than the k-th score; that score is the
  answer (ties only add positives, so recall can exceed the target, never fall short).

  Raises:
    ValueError: if there are no positives.
  """
  y = np.asarray(labels).astype(bool)
  pos = np.sort(np.asarray(probabilities, np.float64)[y])[::-1]
  if len(pos) == 0:
    raise ValueError("no positive labels: recall is undefined")
  # The small tolerance keeps 0.9 * 10 = 9.000000000000002 from asking for a 10th positive.
  k = max(1, math.ceil(target_recall * len(pos) - 1e-9))
  return float(pos[k - 1])


def for_cost(labels: np.ndarray, probabilities: np.ndarray, *, fp_cost: float,
             fn_cost: float) -> float:
  """The threshold minimising fp_cost * FP + fn_cost * FN; the highest one among ties.

  Candidates are the distinct scores (each is the lowest threshold that flags that score) and
  one above every score (flag nothing). Counting from the top of the sorted scores gives FP and
  FN of every candidate at once.
  """
  y = np.asarray(labels).astype(bool)
  p = np.asarray(probabilities, np.float64)
  order = np.argsort(-p, kind="stable")
  p_sorted, y_sorted = p[order], y[order]
  # Index of the last row of each group of equal scores: the threshold at that score flags
  # every row up to and including it.
  last = np.flatnonzero(np.r_[p_sorted[1:] != p_sorted[:-1], True])
  tp = np.cumsum(y_sorted)[last]
  fp = (last + 1) - tp
  fn = y.sum() - tp
  costs = np.r_[fn_cost * y.sum(), fp_cost * fp + fn_cost * fn]
  thresholds = np.r_[np.nextafter(p_sorted[0], np.inf) if len(p) else 1.0, p_sorted[last]]
  # argmin returns the first minimum; candidates run from the highest threshold down.
  return float(thresholds[int(np.argmin(costs))])


# A threshold past either bound is still reported, but called out: at a fraud rate of a
# fraction of a percent, a precision under PRECISION_FLOOR means more than 99 alerts per fraud
# caught, and flagging more than FLAGGED_CEILING of the rows is a review queue no team staffs.
PRECISION_FLOOR = 0.01
FLAGGED_CEILING = 0.05


def warnings_for(counts: dict) -> list[str]:
  """What is wrong with operating at a threshold whose validation confusion is `counts`.

  Returns:
    One sentence per problem (precision below PRECISION_FLOOR, more than FLAGGED_CEILING of the
    rows flagged); empty if none.
  """
  rows = counts["tp"] + counts["fp"] + counts["tn"] + counts["fn"]
  flagged = (counts["tp"] + counts["fp"]) / max(1, rows)
  out = []
  if counts["precision"] < PRECISION_FLOOR:
    out.append(f"validation precision {counts['precision']:.4f} is below "
               f"{PRECISION_FLOOR:g}: {counts['fp']} false alarms for {counts['tp']} frauds")
  if flagged > FLAGGED_CEILING:
    out.append(f"flags {flagged:.1%} of validation rows (more than {FLAGGED_CEILING:.0%})")
  return out


def choose(config, *, val_labels: np.ndarray, val_probabilities: np.ndarray,
           test_labels: np.ndarray, test_probabilities: np.ndarray) -> dict:
  """Chooses the threshold on validation as the config says; reports it on validation and test.

  Args:
    config: an engine Config (target_recall, or fp_cost and fn_cost).
    val_labels: validation labels.
    val_probabilities: validation scores of the model.
    test_labels: test labels.
    test_probabilities: test scores of the model.

  Returns:
    results.json's "threshold" entry: {"value", "target_recall" or "fp_cost"/"fn_cost",
    "validation": confusion, "test": confusion, "warnings": `warnings_for` the validation
    confusion}.
  """
  if config.fp_cost is not None:
    value = for_cost(val_labels, val_probabilities, fp_cost=config.fp_cost,
                     fn_cost=config.fn_cost)
    out = {"value": value, "fp_cost": config.fp_cost, "fn_cost": config.fn_cost}
  else:
    value = for_recall(val_labels, val_probabilities, config.target_recall)
    out = {"value": value, "target_recall": config.target_recall}
  out["validation"] = confusion(val_labels, val_probabilities, value)
  out["test"] = confusion(test_labels, test_probabilities, value)
  out["warnings"] = warnings_for(out["validation"])
  return out
