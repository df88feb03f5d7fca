"""Platt scaling on the validation split: what makes a score the real-world fraud probability.

The prior correction (engine/losses.py `logit_shift`) undoes the class shift of oversampling and
class weights exactly only when the model fits its training distribution, and a model stopped
early on a few hundred frauds does not: the corrected scores of the oversampled model sat too
low on the credit-card set (BUILD.md "Calibrated probabilities" has the figures). Platt scaling
fits two numbers on the validation split,

    probability = sigmoid(scale * logit(p) + offset)

of the prior-corrected (ensemble-averaged) score p, by maximum likelihood. It is monotone
(`scale` > 0), so no ranking, area or threshold decision changes: the threshold is chosen on the
calibrated validation scores. The targets are Platt's (1999): (N+ + 1) / (N+ + 2) for a positive
and 1 / (N- + 2) for a negative, not 1 and 0, so a split the scores separate perfectly still has
a finite fit.

A fit scored on the rows it was fitted on flatters them. The figures that depend on the fit
(the log loss, the Brier score, the counts at 0.5: CROSS_FITTED) are therefore reported
cross-fitted (`cross_fitted`): the validation split is cut in two halves, stratified by class,
and each half is scored with the fit made on the other. The ranking figures need no such care:
every fit is monotone, so they are those of the prior-corrected scores themselves.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Newton's method on two parameters: a handful of steps from the identity; this is a wide bound.
MAX_STEPS = 50
TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Calibration:
  """sigmoid(scale * logit(p) + offset); the identity is scale 1, offset 0.

  `why` says why a fit was not used (None when it was, or none was asked for).
  """
  method: str = "prior"
  scale: float = 1.0
  offset: float = 0.0
  why: str | None = None

  def as_dict(self) -> dict:
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

  def __call__(self, probabilities: np.ndarray) -> np.ndarray:
    """The calibrated probabilities (`apply`)."""
    return apply(probabilities, self)


IDENTITY = Calibration()


def logits(probabilities: np.ndarray) -> np.ndarray:
  """log(p) - log(1 - p) in float64; +-inf at 1 and 0."""
  p = np.asarray(probabilities, np.float64)
  with np.errstate(divide="ignore"):
    return np.log(p) - np.log1p(-p)


def fit(labels: np.ndarray, probabilities: np.ndarray, start: Calibration = IDENTITY,
        ) -> Calibration:
  """Platt scaling of the prior-corrected `probabilities` for `labels` (0/1), by Newton's
  method from `start` (the maximum is the same from anywhere; a nearby fit, such as the whole
  split's for one of its halves, reaches it in fewer steps).

  Returns the identity, with the reason in `why`, when the split has no positive or no
  negative, when the fit does not converge, or when it would reverse the ranking (scale <= 0).
  """
  y = np.asarray(labels).astype(bool)
  positives, negatives = int(y.sum()), int((~y).sum())
  if positives == 0 or negatives == 0:
    return dataclasses.replace(IDENTITY, why="the validation split holds only one class")
  # A score of exactly 0 or 1 keeps its place at the end of the scale: clipped to the largest
  # finite logit a float64 score can have (float64 saturates near 1 sooner than near 0).
  z = np.clip(logits(probabilities), -745.0, 37.0)
  target = np.where(y, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))

  def loss(params):
    a = params[0] * z + params[1]
    # -[t log s(a) + (1 - t) log(1 - s(a))] = log(1 + e^a) - t a, without overflow.
    return float(np.sum(np.logaddexp(0.0, a) - target * a))

  params = np.array([start.scale, start.offset])  # The identity unless told otherwise.
  current = loss(params)
  for _ in range(MAX_STEPS):
    p = 0.5 * (1.0 + np.tanh(0.5 * (params[0] * z + params[1])))  # The sigmoid, no overflow.
    g, w = p - target, p * (1.0 - p)
    # Sums of products, not `@`: a BLAS dot starts BLAS threads, which compete with
    # TensorFlow's for the cores.
    wz = w * z
    grad = np.array([np.sum(g * z), np.sum(g)])
    hess = np.array([[np.sum(wz * z), np.sum(wz)], [np.sum(wz), np.sum(w)]])
    try:
      step = np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:
      break
    # Newton's step, halved until it lowers the loss: far from the optimum (a badly shifted
    # prior) the full step overshoots.
    for _ in range(40):
      candidate = params - step
      value = loss(candidate)
      if value <= current:
        break
      step = step / 2
    else:
      break
    params, current = candidate, value
    if not np.all(np.isfinite(params)):
      break
    if np.max(np.abs(step)) < TOLERANCE:
      scale, offset = float(params[0]), float(params[1])
      if scale <= 0.0:
        return dataclasses.replace(
            IDENTITY, why=f"the fit's scale {scale:.3g} would reverse the ranking")
      return Calibration(method="platt", scale=scale, offset=offset)
  return dataclasses.replace(IDENTITY, why=f"the fit did not converge in {MAX_STEPS} steps")


def fit_method(method: str, labels: np.ndarray, probabilities: np.ndarray) -> Calibration:
  """The calibration `--calibration=method` asks for: `platt`'s fit, or the identity (`prior`)."""
  return fit(labels, probabilities) if method == "platt" else IDENTITY


# The metrics that a fit on the rows they are computed on would flatter: those of the
# probabilities themselves and of the threshold 0.5 on them. The ranking metrics (auc, prc,
# recall_at_fpr) are the same under every monotone fit.
CROSS_FITTED = ("loss", "brier", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall")
# Two halves: each fit sees half the split's few positives, and the cost is two more fits.
FOLDS = 2


def folds(labels: np.ndarray, num_folds: int = FOLDS) -> np.ndarray:
  """Each row's fold, stratified: the i-th row of a class (in the split's order) is in fold
  i % num_folds, so every fold holds its share of the positives and every epoch the same rows."""
  y = np.asarray(labels).astype(bool)
  fold = np.empty(len(y), np.int64)
  for cls in (False, True):
    rows = np.flatnonzero(y == cls)
    fold[rows] = np.arange(len(rows)) % num_folds
  return fold


def cross_fitted(labels: np.ndarray, probabilities: np.ndarray, whole: Calibration,
                 num_folds: int = FOLDS) -> np.ndarray:
  """The probabilities of each fold calibrated by a Platt fit on the other folds' rows.

  Args:
    labels: 0/1 labels.
    probabilities: the prior-corrected scores, one per label.
    whole: the fit on every row, where the folds' fits start.
    num_folds: the folds.

  Returns:
    Calibrated probabilities, none of them by a fit that saw its own row.
  """
  y, p = np.asarray(labels), np.asarray(probabilities, np.float64)
  fold = folds(y, num_folds)
  out = np.empty_like(p)
  for k in range(num_folds):
    held_out = fold == k
    fitted = fit(y[~held_out], p[~held_out], start=whole if whole.why is None else IDENTITY)
    out[held_out] = apply(p[held_out], fitted)
  return out


def apply(probabilities: np.ndarray, calibration: Calibration) -> np.ndarray:
  """The calibrated probabilities, as the export computes them (TensorFlow, float64), so equal
  scores give bit-equal results in the engine and in the export."""
  import tensorflow as tf
  return apply_tf(tf.constant(probabilities, tf.float64), calibration.scale,
                  calibration.offset).numpy()


def apply_tf(probabilities, scale, offset):
  """sigmoid(scale * logit(p) + offset) on float64 tensors (scale and offset may be variables);
  the identity returns `probabilities` themselves, not their round trip through the logit."""
  import tensorflow as tf
  z = tf.math.log(probabilities) - tf.math.log1p(-probabilities)
  identity = tf.logical_and(tf.equal(scale, 1.0), tf.equal(offset, 0.0))
  return tf.where(identity, probabilities, tf.sigmoid(scale * z + offset))
