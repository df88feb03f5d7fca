"""`--loss=bce`, the default: binary cross-entropy from logits (the stable form)."""

from __future__ import annotations

import tensorflow as tf


def per_example(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Binary cross-entropy of each example."""
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype),
                                                 logits=logits)
