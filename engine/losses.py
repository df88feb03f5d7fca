"""Weighted binary cross-entropy and the class statistics the strategies derive from labels."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def class_weights(counts, strategy: str) -> np.ndarray:
  """[w_negative, w_positive] from the training split's class counts [negatives, positives].

  `class_weight`: total / (2 * count), so each class carries half the total weight and the loss
  keeps the scale it would have on balanced data. Otherwise 1 for both.
  """
  if strategy != "class_weight":
    return np.ones(2, np.float32)
  counts = np.asarray(counts, np.float64)
  return (counts.sum() / (2.0 * counts)).astype(np.float32)


def initial_bias(counts, strategy: str) -> float:
  """The output bias the model starts from, given the class counts [negatives, positives].

  log(pos / neg) makes the initial prediction the base rate, so the first steps do not spend
  themselves learning that fraud is rare (the tutorial's "careful bias" initialisation). The
  oversampled stream is balanced, so its base rate is 1/2: bias 0.
  """
  if strategy == "oversample":
    return 0.0
  neg, pos = (float(c) for c in counts)
  return math.log(pos / neg)


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Binary cross-entropy from logits, one value per example (numerically stable form)."""
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype),
                                                 logits=logits)


def weighted_loss(labels: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor,
                  global_batch_size: int) -> tf.Tensor:
  """This replica's share of the global-batch mean of the weighted loss.

  Divides by the global batch size, not the per-replica one: the replicas' gradients are summed,
  so the sum of the shares is the mean over the global batch with any number of replicas.
  """
  return tf.nn.compute_average_loss(per_example_loss(labels, logits) * weights,
                                    global_batch_size=global_batch_size)
