"""Exact evaluation over all predictions of a split, and the results table."""

from __future__ import annotations

import numpy as np


class Scorer:
  """Logits (float32) of a host (single-device) model, in one compiled function.

  The loop scores the whole validation split every epoch, so the call is compiled: the eager
  Keras call's per-op overhead cost several times the compiled call.
  """

  def __init__(self, model, jit_compile: bool = False):
    import tensorflow as tf

    from engine import models
    self._logits = tf.function(lambda rows: models.member_logits(model, rows), autograph=False,
                               reduce_retracing=True, jit_compile=jit_compile)

  def __call__(self, x, batch_size: int = 65536) -> np.ndarray:
    """Logits [members, rows] of the rows of `x` (an array or a tensor), in batches."""
    import tensorflow as tf
    out = [self._logits(tf.convert_to_tensor(x[start:start + batch_size], tf.float32)).numpy()
           for start in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=-1) if out else np.zeros((1, 0), np.float32)


def member_probabilities(logits: np.ndarray, shift: float = 0.0) -> np.ndarray:
  """Each member's fraud probabilities (float64) from its logits [members, rows].

  Sigmoid in float64 of logit + shift (the prior correction, engine/losses.py `logit_shift`),
  as the export computes it, so equal logits give bit-equal scores.
  """
  import tensorflow as tf
  return tf.sigmoid(tf.cast(logits, tf.float64) + shift).numpy()


def probabilities(logits: np.ndarray, shift: float = 0.0) -> np.ndarray:
  """The ensemble's fraud probabilities: the mean of its members' (one member: its own)."""
  return member_probabilities(np.atleast_2d(logits), shift).mean(axis=0)


def predict_probabilities(model, x: np.ndarray, batch_size: int = 65536,
                          shift: float = 0.0) -> np.ndarray:
  """Fraud probabilities of a host model, in float64 (see Scorer, to score more than once)."""
  return probabilities(Scorer(model)(x, batch_size), shift)


def _ranked_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Cumulative (true positives, false positives) at each distinct score, highest first.

  Entry k counts the rows whose score is at least the k-th highest distinct score: the
  confusion counts of every threshold that changes a decision. Tied scores enter together.
  """
  order = np.argsort(p)[::-1]
  p, y = p[order], y[order]
  last_of_ties = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
  tps = np.cumsum(y)[last_of_ties]
  return tps, last_of_ties + 1 - tps


def _areas(tps: np.ndarray, fps: np.ndarray) -> tuple[float, float]:
  """ROC-AUC and average precision from `_ranked_counts`."""
  tpr = np.r_[0.0, tps / tps[-1]]
  fpr = np.r_[0.0, fps / fps[-1]]
  precision = tps / (tps + fps)
  return float(np.trapezoid(tpr, fpr)), float(np.sum(np.diff(tpr) * precision))


def roc_auc_and_average_precision(labels: np.ndarray, probabilities: np.ndarray,
                                  ) -> tuple[float, float]:
  """ROC-AUC and average precision (PR-AUC) over all predictions, from one sort.

  They equal sklearn's `roc_auc_score` and `average_precision_score` (a test checks it, ties
  included). Computed here because the loop calls this every epoch: sklearn's input validation
  and two separate sorts cost several times this function's one sort on the validation split.
  Average precision sums precision times the recall gained at each threshold, with no
  interpolation between points, which would be optimistic on a curve this jagged.
  """
  return _areas(*_ranked_counts(np.asarray(labels, np.int64),
                                np.asarray(probabilities, np.float64)))


# The false-positive rates fraud teams quote recall at: one false alarm per 100 and per 1,000
# legitimate transactions.
FPR_RATES = (0.01, 0.001)


def _recall_at_fpr(tps: np.ndarray, fps: np.ndarray, rates) -> dict[str, float]:
  """`recall_at_fpr` from `_ranked_counts`."""
  # Both never decrease down the ranking, so the last threshold whose rate is within a bound
  # has the highest recall there. Dividing as sklearn's roc_curve does keeps the bound exact:
  # 450 / 45000 is the double 0.01, so that threshold counts at the rate 0.01.
  fpr, tpr = fps / fps[-1], tps / tps[-1]
  last = np.searchsorted(fpr, np.asarray(rates, np.float64), side="right") - 1
  # None within the bound (-1): only the threshold above every score, which flags nothing.
  return {_rate_key(a): float(tpr[i]) if i >= 0 else 0.0 for a, i in zip(rates, last)}


def _rate_key(rate: float) -> str:
  # repr's shortest round trip: 0.01 -> "0.01", and two different rates never share a key.
  return repr(float(rate))


def recall_at_fpr(labels: np.ndarray, probabilities: np.ndarray, rates=FPR_RATES,
                  ) -> dict[str, float]:
  """The highest recall at a false-positive rate of at most each of `rates`.

  Over every threshold (rows with tied scores are flagged together, and the threshold above
  every score flags nothing: recall 0), the highest true-positive rate among those whose
  false-positive rate FP / negatives is at most the rate. It equals the highest `tpr` with
  `fpr <= rate` on sklearn's `roc_curve(drop_intermediate=False)` (a test checks it).

  Args:
    labels: 0/1 labels.
    probabilities: scores, one per label; higher means more likely fraud.
    rates: the false-positive rates, each in [0, 1].

  Returns:
    {repr(rate): recall}, e.g. {"0.01": 0.82, "0.001": 0.61}; NaN where a class is absent.

  Raises:
    ValueError: a rate outside [0, 1].
  """
  rates = tuple(rates)
  if not all(0.0 <= a <= 1.0 for a in rates):
    raise ValueError(f"false-positive rates must be in [0, 1], got {rates}")
  y = np.asarray(labels).astype(np.int64)
  if not 0 < y.sum() < len(y):
    return {_rate_key(a): float("nan") for a in rates}
  return _recall_at_fpr(*_ranked_counts(y, np.asarray(probabilities, np.float64)), rates)


def clip_probabilities(probabilities: np.ndarray) -> np.ndarray:
  """Probabilities in [1e-7, 1 - 1e-7] (float64): the log loss stays finite."""
  return np.clip(np.asarray(probabilities, np.float64), 1e-7, 1 - 1e-7)


def exact_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5,
                  ) -> dict:
  """Confusion counts at `threshold`; ROC-AUC, PR-AUC and recall at fixed false-positive
  rates over all predictions.

  PR-AUC is average precision, the step-wise area that does not interpolate optimistically.
  `recall_at_fpr` is the one nested entry, {"0.01": recall, "0.001": recall} (FPR_RATES); the
  tables and TensorBoard name its values `recall_at_fpr_0.01`, ... (`flat_metrics`). The
  ranking metrics use the probabilities as they are: clipping them (as the log loss must, to
  stay finite) would turn saturated scores into ties and change the ranking they measure.
  """
  y = np.asarray(labels).astype(np.int64)
  p = np.asarray(probabilities, np.float64)
  clipped = clip_probabilities(p)
  pred = p >= threshold
  tp = int(np.sum(pred & (y == 1)))
  fp = int(np.sum(pred & (y == 0)))
  tn = int(np.sum(~pred & (y == 0)))
  fn = int(np.sum(~pred & (y == 1)))
  if tp + fn > 0 and fp + tn > 0:
    counts = _ranked_counts(y, p)  # One sort for every ranking metric: this runs every epoch.
    (auc, prc), at_fpr = _areas(*counts), _recall_at_fpr(*counts, FPR_RATES)
  else:
    auc, prc = float("nan"), float("nan")
    at_fpr = recall_at_fpr(y, p, FPR_RATES)  # NaN for each rate.
  return {
      "loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
      "brier": float(np.mean((p - y) ** 2)),
      "tp": tp, "fp": fp, "tn": tn, "fn": fn,
      "accuracy": (tp + tn) / max(1, len(y)),
      "precision": tp / (tp + fp) if tp + fp else 0.0,
      "recall": tp / (tp + fn) if tp + fn else 0.0,
      "auc": auc,
      "prc": prc,
      "recall_at_fpr": at_fpr,
  }


def flat_metrics(metrics: dict) -> dict:
  """`metrics` with each nested dict spread into `<name>_<key>` entries.

  {"recall_at_fpr": {"0.01": r}} becomes {"recall_at_fpr_0.01": r}: the names TensorBoard and
  the tables use for what results.json nests.
  """
  out = {}
  for name, value in metrics.items():
    if isinstance(value, dict):
      out.update({f"{name}_{k}": v for k, v in flat_metrics(value).items()})
    else:
      out[name] = value
  return out


TABLE_COLUMNS = ("loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "auc", "prc",
                 "recall_at_fpr_0.01")
RESULTS_COLUMNS = ("threshold", "tp", "fp", "tn", "fn", "precision", "recall", "auc", "prc",
                   "recall_at_fpr_0.01", "loss")
# Column headers shorter than the metric's name, so the results table fits 100 columns.
HEADERS = {"recall_at_fpr_0.01": "r@fpr1%"}


def _cell(column: str, value) -> str:
  if value is None:
    return "-"
  if isinstance(value, (int, np.integer)):
    return f"{value:d}"
  if not isinstance(value, (float, np.floating)):
    return str(value)
  # A threshold can be 1e-5 on calibrated scores: significant digits, not decimals.
  return f"{value:.4g}" if column == "threshold" else f"{value:.4f}"


def format_table(rows: dict[str, dict], columns=TABLE_COLUMNS) -> str:
  """A plain-text table: one row per split/run, one column per metric; '-' where a row has none.

  Nested metrics are looked up by their flat names (`flat_metrics`: `recall_at_fpr_0.01`).
  Columns are as narrow as their headers (HEADERS) and cells allow, one space apart, so the
  results table fits 100 columns; a wider count still leaves a space.
  """
  cells = {name: [_cell(c, vals.get(c)) for c in columns]
           for name, vals in ((n, flat_metrics(v)) for n, v in rows.items())}
  headers = [HEADERS.get(c, c) for c in columns]
  widths = [max(len(h), 6, *(len(r[i]) for r in cells.values())) + 1
            for i, h in enumerate(headers)]
  width = max(len(k) for k in rows) + 1
  lines = [" " * width + "".join(f"{h:>{w}}" for h, w in zip(headers, widths))]
  for name, row in cells.items():
    lines.append(f"{name:<{width}}" + "".join(f"{v:>{w}}" for v, w in zip(row, widths)))
  return "\n".join(lines)


def results_table(results: dict) -> str:
  """The end of a training run on screen: a title saying which weights and which threshold,
  then validation and test at 0.5 and at the chosen threshold (`@t`; its rows have no ranking
  metrics: those do not depend on the threshold)."""
  th = results["threshold"]
  rule = (f"recall >= {th['target_recall']:g}" if "target_recall" in th else
          f"lowest {th['fp_cost']:g}*FP + {th['fn_cost']:g}*FN")
  at_t = {"threshold": th["value"]}
  rows = {"validation": {"threshold": 0.5, **results["validation"]},
          "test": {"threshold": 0.5, **results["test"]},
          "validation @t": {**at_t, **th["validation"]}, "test @t": {**at_t, **th["test"]}}
  held_out = ("" if not results.get("validation_cross_fitted") else
              "validation loss and counts at 0.5: cross-fitted (each half by the Platt fit "
              "on the other).\n")
  return (f"Metrics of the {_which_weights(results.get('weights', {}))}; auc, prc and r@fpr1% "
          "over all predictions.\n"
          "r@fpr1%: the best recall at a false-positive rate of at most 1% (recall_at_fpr).\n"
          f"@t: the threshold chosen on validation for {rule}.\n" + held_out
          + format_table(rows, RESULTS_COLUMNS))


def _which_weights(weights: dict) -> str:
  """results.json's "weights" in words: the best epoch, each member's, or the last weights."""
  if weights.get("which") != "best":
    return "last weights"
  if "epochs" not in weights:
    return f"best epoch ({weights['epoch']})"
  epochs = weights["epochs"]
  listed = (", ".join(map(str, epochs)) if len(epochs) <= 12 else
            f"{min(epochs)}-{max(epochs)}, each in results.json")
  return f"members' own best epochs ({listed})"
