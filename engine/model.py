"""The classifier: an ensemble of K members, each Dense(relu) layers with replica-aware dropout and
one logit out, trained side by side as stacked weights (one batched matmul per layer).

A member is an ordinary MLP; stacking K of them turns K small matmuls into one [K, B, in] x
[K, in, out] product, so an ensemble costs far less than K runs on hardware the single model
leaves idle (a 2-core CPU included: the step is dominated by per-op overhead, not FLOPs). Each
member has its own initial weights, dropout masks and training rows; they share nothing but the
step. `--ensemble=1` (one member) is a plain MLP.
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


class Classifier(keras.Model):
  """K members of Dense(units, relu) [-> dropout] ... -> Dense(1): logits [K, batch]."""

  def __init__(self, *, hidden_units, dropout: float, output_bias: float, seed: int,
               members: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.rate = float(dropout)
    self.members = int(members)
    self.hidden = []
    # Member k's layer i is seeded seed + i + 7919 * k: member 0 is the single model's seeds.
    seeds = lambda i: [seed + i + 7919 * k for k in range(self.members)]  # noqa: E731
    for i, units in enumerate(hidden_units):
      layer = StackedDense(units, members=self.members, seeds=seeds(i), activation="relu",
                           name=f"dense_{i}")
      # An attribute each, not only a list entry: tf.train.Checkpoint follows attributes of a
      # Keras 3 model but not the layers inside a Python list (they would not be saved).
      setattr(self, f"dense_{i}", layer)
      self.hidden.append(layer)
    self.logit = StackedDense(1, members=self.members, seeds=seeds(len(hidden_units)),
                              bias_value=output_bias, name="logit")

  def call(self, x, training=False, dropout_seed=None):
    """Logits [K, B] of rows [B, F] (every member scores every row) or [K, B, F] (each its own).

    One member runs on 2-D rows with plain matmuls: on CPU a batched matmul of one [B, in] by
    [in, out] costs more than the plain one, for the same numbers.
    """
    single = self.members == 1
    if single:
      x = tf.reshape(x, [-1, x.shape[-1]])
    elif x.shape.rank == 2:
      x = tf.broadcast_to(x[tf.newaxis], tf.concat([[self.members], tf.shape(x)], 0))
    for i, layer in enumerate(self.hidden):
      x = layer(x)
      if training and self.rate > 0.0:
        if dropout_seed is None:
          raise ValueError("training with dropout needs a dropout_seed")
        x = replica_dropout(x, self.rate, tf.random.experimental.stateless_fold_in(dropout_seed, i))
    logits = tf.squeeze(self.logit(x), axis=-1)
    return logits[tf.newaxis] if single else logits


def build_model(config, *, num_features: int, output_bias: float) -> Classifier:
  """Builds the classifier and creates its variables (call under the strategy's scope)."""
  model = Classifier(hidden_units=config.hidden_units, dropout=config.dropout,
                     output_bias=output_bias, seed=config.seed, members=config.ensemble)
  model(tf.zeros([1, num_features], tf.float32))
  return model
