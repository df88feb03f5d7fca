"""`--loss=focal`: the focal loss of Lin et al. (2017), "Focal Loss for Dense Object Detection".

(1 - p_t)^gamma * BCE, with p_t the probability given to the true class: examples the model
already gets right weigh less, so the loss concentrates on the hard ones. gamma = 2, the
paper's choice. No alpha: the strategy's class weights play that part.
"""

from __future__ import annotations

import tensorflow as tf

GAMMA = 2.0


def per_example(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Focal loss of each example."""
  y = tf.cast(labels, logits.dtype)
  bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
  p = tf.sigmoid(logits)
  p_t = y * p + (1.0 - y) * (1.0 - p)
  return tf.pow(1.0 - p_t, GAMMA) * bce
