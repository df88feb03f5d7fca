"""Exact evaluation over all predictions of a split, and the results table."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def predict_probabilities(model, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
  """Fraud probabilities of a host (single-device) model, in float64."""
  import tensorflow as tf
  out = []
  for start in range(0, len(x), batch_size):
    logits = model(tf.constant(x[start:start + batch_size]), training=False)
    out.append(tf.sigmoid(tf.cast(logits, tf.float64)).numpy())
  return np.concatenate(out) if out else np.zeros(0)


def exact_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5,
                  ) -> dict[str, float]:
  """Confusion counts at `threshold`, and ROC-AUC and PR-AUC over all predictions.

  PR-AUC is average precision, the step-wise area that does not interpolate optimistically.
  """
  y = np.asarray(labels).astype(np.int64)
  p = np.clip(np.asarray(probabilities, np.float64), 1e-7, 1 - 1e-7)
  pred = p >= threshold
  tp = int(np.sum(pred & (y == 1)))
  fp = int(np.sum(pred & (y == 0)))
  tn = int(np.sum(~pred & (y == 0)))
  fn = int(np.sum(~pred & (y == 1)))
  both = len(np.unique(y)) == 2
  return {
      "loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
      "tp": tp, "fp": fp, "tn": tn, "fn": fn,
      "accuracy": (tp + tn) / max(1, len(y)),
      "precision": tp / (tp + fp) if tp + fp else 0.0,
      "recall": tp / (tp + fn) if tp + fn else 0.0,
      "auc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
      "prc": float(skm.average_precision_score(y, p)) if both else float("nan"),
  }


def format_table(rows: dict[str, dict[str, float]]) -> str:
  """A plain-text table: one row per split/run, one column per metric."""
  cols = ["loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "auc", "prc"]
  width = max(len(k) for k in rows) + 2
  lines = [" " * width + "".join(f"{c:>11}" for c in cols)]
  for name, vals in rows.items():
    cells = []
    for c in cols:
      v = vals.get(c, float("nan"))
      cells.append(f"{v:>11d}" if isinstance(v, int) else f"{v:>11.4f}")
    lines.append(f"{name:<{width}}" + "".join(cells))
  return "\n".join(lines)
