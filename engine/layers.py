"""Layers the model families share: replica-aware stateless dropout and K stacked Dense layers.

Not a model: engine/models/ holds one module per model family, found by name; this one sits
beside the package so that no `--model` names it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


# The counter-based generator of the dropout masks: Philox, whatever the device and mode. Under
# XLA on CPU, TensorFlow's default choice compiled to code many times slower than Philox's
# (BUILD.md "Performance"): that, not XLA, made the compiled step slow.
DROPOUT_RNG = "philox"
# Each mask entry is a 16-bit uniform draw, two to one 32-bit word of Philox: half the random
# words of a float mask, and no conversion to float. The rate is rounded to a multiple of
# 1/65536 (at most 7.6e-6 off) and the kept units are scaled by the rounded rate, so the
# expectation is exact.
MASK_LEVELS = 1 << 16


def replica_dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
  """Inverted dropout whose mask is a pure function of `seed`.

  Keras 3 `Dropout` keeps its RNG state in one variable; under MirroredStrategy that variable is
  mirrored, so every replica draws the same mask. A stateless mask seeded by (run seed, step,
  replica id) differs across replicas and steps, and is reproducible on resume.
  """
  dropped = min(round(rate * MASK_LEVELS), MASK_LEVELS - 1)  # Units dropped per 65536.
  size = tf.size(x)
  words = tf.random.stateless_uniform([(size + 1) // 2], seed=seed, minval=None, maxval=None,
                                      dtype=tf.uint32, alg=DROPOUT_RNG)
  draws = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
  keep = tf.reshape(draws, tf.shape(x)) >= tf.constant(dropped, tf.uint16)
  scale = tf.constant(MASK_LEVELS / (MASK_LEVELS - dropped), x.dtype)
  return tf.where(keep, x * scale, tf.zeros_like(x))


class StackedDense(keras.layers.Layer):
  """K independent Dense layers applied side by side: [K, B, in] -> [K, B, units].

  Each member's kernel is Glorot-uniform initialised on its own (in, units) shape, from its own
  seed: a Glorot initialiser given the stacked [K, in, units] shape would count K into the fan.
  """

  def __init__(self, units: int, *, members: int, seeds: list[int], activation=None,
               bias_value: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.units, self.members, self.seeds = int(units), int(members), list(seeds)
    self.activation = keras.activations.get(activation)
    self.bias_value = float(bias_value)

  def build(self, input_shape):
    fan_in = int(input_shape[-1])
    values = np.stack([keras.initializers.GlorotUniform(seed=s)((fan_in, self.units)).numpy()
                       for s in self.seeds])
    self.kernel = self.add_weight(name="kernel", shape=(self.members, fan_in, self.units),
                                  initializer=lambda shape, dtype=None: tf.constant(values, dtype))
    self.bias = self.add_weight(name="bias", shape=(self.members, self.units),
                                initializer=keras.initializers.Constant(self.bias_value))

  def call(self, x):
    if x.shape.rank == 2:  # One member, rows [B, in]: a plain matmul (see Classifier.call).
      kernel = tf.reshape(self.kernel, self.kernel.shape[1:])
      return self.activation(tf.matmul(x, kernel) + self.bias[0])
    return self.activation(tf.matmul(x, self.kernel) + self.bias[:, tf.newaxis, :])
