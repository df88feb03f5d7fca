"""Pictures of a model's test behaviour for TensorBoard: confusion matrix, ROC and PR curves.

matplotlib draws them (Agg backend: no display needed). Axes, labels and log scales are what
make these readable, and drawing them by hand in numpy would be more code than the engine.
Each function returns the picture as uint8 RGB pixels [height, width, 3]; engine/summaries.py
writes them.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from engine import evaluation


def _figure():
  import matplotlib
  matplotlib.use("Agg")  # Before pyplot: never try to open a window on a server.
  from matplotlib import pyplot as plt
  fig = plt.figure(figsize=(4.5, 4), dpi=80)
  # Fixed margins that fit these labels: `tight_layout` sizes every tick label, and that was
  # the larger part of what the four pictures cost at the end of each run.
  fig.subplots_adjust(left=0.16, right=0.94, bottom=0.13, top=0.91)
  return plt, fig


def _rgb(plt, fig) -> np.ndarray:
  # The Agg canvas's pixels, not a PNG: TensorBoard's image summary encodes its own PNG, and
  # matplotlib's PNG writer goes through PIL, whose first save imports every image plugin
  # (a visible share of a short run's wall time).
  fig.canvas.draw()
  rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return rgb


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                     title: str) -> np.ndarray:
  """The 2x2 counts at `threshold`, with a log colour scale (fraud is a tiny share of rows)."""
  plt, fig = _figure()
  y = np.asarray(labels).astype(int)
  pred = (np.asarray(probabilities) >= threshold).astype(int)
  cm = skm.confusion_matrix(y, pred, labels=[0, 1])
  ax = fig.add_subplot()
  shade = np.log10(cm + 1)
  ax.imshow(shade, cmap="Blues")
  for (i, j), v in np.ndenumerate(cm):
    dark = shade[i, j] > shade.max() / 2  # white on the dark cells, to stay readable
    ax.text(j, i, str(v), ha="center", va="center", color="white" if dark else "black",
            fontsize=12)
  ax.set_xticks([0, 1], ["legit", "fraud"])
  ax.set_yticks([0, 1], ["legit", "fraud"])
  ax.set_xlabel("predicted")
  ax.set_ylabel("actual")
  ax.set_title(f"{title} @ {threshold:.4g}")
  return _rgb(plt, fig)


def roc_curve(labels: np.ndarray, probabilities: np.ndarray, title: str) -> np.ndarray:
  """ROC with a log false-positive axis: the interesting part is the lowest FPRs (< 0.01)."""
  plt, fig = _figure()
  fpr, tpr, _ = skm.roc_curve(labels, probabilities)
  ax = fig.add_subplot()
  ax.plot(np.maximum(fpr, 1e-6), tpr)
  ax.set_xscale("log")
  ax.set_xlim(1e-5, 1)
  auc, _ = evaluation.roc_auc_and_average_precision(labels, probabilities)
  _curve_axes(ax, "false positive rate", "true positive rate (recall)", f"{title}: AUC {auc:.4f}")
  return _rgb(plt, fig)


def pr_curve(labels: np.ndarray, probabilities: np.ndarray, title: str,
             threshold: float | None = None) -> np.ndarray:
  """Precision against recall, with the chosen operating point marked."""
  plt, fig = _figure()
  precision, recall, _ = skm.precision_recall_curve(labels, probabilities)
  ax = fig.add_subplot()
  ax.step(recall, precision, where="post")
  if threshold is not None:
    pred = np.asarray(probabilities) >= threshold
    y = np.asarray(labels).astype(bool)
    tp = np.sum(pred & y)
    ax.plot([tp / max(1, y.sum())], [tp / max(1, pred.sum())], "o", color="red",
            label=f"threshold {threshold:.4g}")
    ax.legend(loc="lower left")
  ax.set_xlim(0, 1.02)
  _, ap = evaluation.roc_auc_and_average_precision(labels, probabilities)
  _curve_axes(ax, "recall", "precision", f"{title}: AP {ap:.4f}")
  return _rgb(plt, fig)


def reliability(labels: np.ndarray, probabilities: np.ndarray, title: str,
                bins: int = 10) -> np.ndarray:
  """Observed fraud rate against predicted probability, in bins of equal counts of rows.

  Equal-count bins on log axes: almost every transaction scores near 0, so equal-width bins
  would put nearly all rows in the first. A calibrated model's points lie on the diagonal.
  """
  plt, fig = _figure()
  p = np.asarray(probabilities, np.float64)
  y = np.asarray(labels, np.float64)
  order = np.argsort(p)
  groups = [g for g in np.array_split(order, bins) if len(g)]
  predicted = np.array([p[g].mean() for g in groups])
  observed = np.array([y[g].mean() for g in groups])
  floor = 0.5 / max(1, len(p))
  ax = fig.add_subplot()
  ax.plot([floor, 1], [floor, 1], color="grey", linestyle="--", linewidth=1)
  ax.plot(np.maximum(predicted, floor), np.maximum(observed, floor), "o-")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(floor, 1)
  brier = float(np.mean((p - y) ** 2))
  ax.set_xlabel("mean predicted probability")
  ax.set_ylabel("observed fraud rate")
  ax.set_title(f"{title}: Brier {brier:.5f}")
  ax.grid(True, alpha=0.3)
  return _rgb(plt, fig)


def _curve_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
  """What the two curves share: a y axis of rates in [0, 1], labels, title and a light grid."""
  ax.set_ylim(0, 1.02)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
