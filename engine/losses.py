"""Weighted binary cross-entropy and the class statistics the strategies derive from labels."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def class_weights(counts, strategy: str, positive_fraction: float = 0.5) -> np.ndarray:
  """[w_negative, w_positive] from the training split's class counts [negatives, positives].

  `class_weight`: the positives carry `positive_fraction` q of the total weight and the
  negatives 1 - q: w_pos = q * total / pos, w_neg = (1 - q) * total / neg, so the loss keeps the
  scale of the unweighted one. q = 1/2 is the classic total / (2 * count); a smaller q weighs
  the few positives less heavily (a positive counts (q / (1 - q)) * (neg / pos) legitimate
  rows: a few at the default q = 0.005 on the credit-card set, hundreds at 1/2), which is what
  the oversampled stream's positive fraction does by drawing. Otherwise 1 for both.
  """
  if strategy != "class_weight":
    return np.ones(2, np.float32)
  counts = np.asarray(counts, np.float64)
  shares = np.array([1.0 - positive_fraction, positive_fraction])
  return (shares * counts.sum() / counts).astype(np.float32)


def initial_bias(counts, strategy: str, positive_fraction: float = 0.5) -> float:
  """The output bias the model starts from, given the class counts [negatives, positives].

  log(pos / neg) makes the initial prediction the base rate, so the first steps do not spend
  themselves learning that fraud is rare (the tutorial's "careful bias" initialisation). The
  base rate the loss sees is the positive fraction p for the oversampled stream and for class
  weights (the positives' share of the weight): bias log(p / (1 - p)) (0 at 1/2).
  """
  if strategy in ("oversample", "class_weight"):
    return math.log(positive_fraction / (1.0 - positive_fraction))
  neg, pos = (float(c) for c in counts)
  return math.log(pos / neg)


def logit_shift(counts, strategy: str, positive_fraction: float = 0.5) -> float:
  """What to add to the model's logit so its probability is the real-world one.

  Oversampling and class weights train the model on a shifted prior: its odds are the real
  odds times (p / (1 - p)) / (pi / (1 - pi)) for a stream of positive fraction p against the
  real base rate pi, and times w_pos / w_neg under class weights (the weighted loss is
  minimised by those odds). Subtracting the log of that factor undoes the shift exactly when the
  model fits its training distribution, and, being monotone, changes no ranking: AUC and PR-AUC
  stay as they are; the log loss, the Brier score and the counts at a threshold become the real
  ones.
  """
  if strategy == "oversample":
    neg, pos = (float(c) for c in counts)
    return math.log(pos / neg) - math.log(positive_fraction / (1.0 - positive_fraction))
  if strategy == "class_weight":
    w_neg, w_pos = (float(w) for w in class_weights(counts, strategy, positive_fraction))
    return -math.log(w_pos / w_neg)
  return 0.0


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Binary cross-entropy from logits, one value per example (numerically stable form)."""
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype),
                                                 logits=logits)


def probability_loss(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
  """Binary cross-entropy of probabilities (an ensemble's mean has no single logit), clipped to
  [1e-7, 1 - 1e-7] as Keras' BinaryCrossentropy does, so a saturated score stays finite."""
  p = tf.clip_by_value(probabilities, 1e-7, 1.0 - 1e-7)
  y = tf.cast(labels, p.dtype)
  return -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))


def weighted_loss(labels: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor,
                  global_batch_size: int) -> tf.Tensor:
  """This replica's share of the global-batch mean of the weighted loss.

  Divides by the global batch size, not the per-replica one: the replicas' gradients are summed,
  so the sum of the shares is the mean over the global batch with any number of replicas.
  """
  return tf.nn.compute_average_loss(per_example_loss(labels, logits) * weights,
                                    global_batch_size=global_batch_size)
