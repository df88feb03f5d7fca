"""Losses, one module each, found by name: `--loss=NAME` imports `engine.losses.NAME`.

The contract of a loss module (adding the file is the whole change):

  def per_example(labels, logits) -> tf.Tensor

the unweighted loss of each example: labels and logits of one shape ([B], or [K, B] for K
members), float labels in {0, 1}; the same shape out. The engine applies the strategy's class
weights, the scaling across replicas and the mean over the ensemble's members (`weighted_loss`).
"""

from __future__ import annotations

import importlib
import pkgutil

import tensorflow as tf


def names() -> list[str]:
  """The losses there are: the modules of this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def per_example_fn(name: str):
  """`per_example` of loss `name`; ValueError naming the known ones if there is none."""
  if name not in names():
    raise ValueError(f"no loss '{name}' (engine/losses/{name}.py); known: {', '.join(names())}")
  return importlib.import_module(f"engine.losses.{name}").per_example


def weighted_loss(per_example, labels: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor, *,
                  global_batch_size: int, members_mean: int = 1) -> tf.Tensor:
  """This replica's share of the global-batch mean of the weighted loss.

  Divides by the global batch size, not the per-replica one: the replicas' gradients are summed,
  so the sum of the shares is the mean over the global batch with any number of replicas.
  `members_mean`: the members' losses are summed and divided by it. Independent members (each
  its own weights) pass 1: each then gets the gradient of its own mean loss, exactly as alone.
  Members that share weights pass K: the loss is the mean of theirs.
  """
  values = per_example(tf.cast(labels, logits.dtype), logits) * weights
  return tf.nn.compute_average_loss(values, global_batch_size=global_batch_size * members_mean)


def probability_loss(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
  """Binary cross-entropy of probabilities (an ensemble's mean has no single logit), clipped to
  [1e-7, 1 - 1e-7] as Keras' BinaryCrossentropy does, so a saturated score stays finite."""
  p = tf.clip_by_value(probabilities, 1e-7, 1.0 - 1e-7)
  y = tf.cast(labels, p.dtype)
  return -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
