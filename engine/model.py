"""The classifier: Dense(relu) layers with replica-aware dropout, and one logit out."""

from __future__ import annotations

import keras
import tensorflow as tf


def replica_dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
  """Dropout whose mask is a pure function of `seed`.

  Keras 3 `Dropout` keeps its RNG state in one variable; under MirroredStrategy that variable is
  mirrored, so every replica draws the same mask. A stateless mask seeded by (run seed, step,
  replica id) differs across replicas and steps, and is reproducible on resume.
  """
  return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)


class Classifier(keras.Model):
  """Dense(units, relu) [-> dropout] ... -> Dense(1): logits of the positive class."""

  def __init__(self, *, hidden_units, dropout: float, output_bias: float, seed: int, **kwargs):
    super().__init__(**kwargs)
    self.rate = float(dropout)
    self.hidden = []
    for i, units in enumerate(hidden_units):
      layer = keras.layers.Dense(units, activation="relu", name=f"dense_{i}",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))
      # An attribute each, not only a list entry: tf.train.Checkpoint follows attributes of a
      # Keras 3 model but not the layers inside a Python list (they would not be saved).
      setattr(self, f"dense_{i}", layer)
      self.hidden.append(layer)
    self.logit = keras.layers.Dense(
        1, name="logit",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + len(hidden_units)),
        bias_initializer=keras.initializers.Constant(output_bias))

  def call(self, x, training=False, dropout_seed=None):
    for i, layer in enumerate(self.hidden):
      x = layer(x)
      if training and self.rate > 0.0:
        if dropout_seed is None:
          raise ValueError("training with dropout needs a dropout_seed")
        x = replica_dropout(x, self.rate, tf.random.experimental.stateless_fold_in(dropout_seed, i))
    return tf.squeeze(self.logit(x), axis=-1)


def build_model(config, *, num_features: int, output_bias: float) -> Classifier:
  """Builds the classifier and creates its variables (call under the strategy's scope)."""
  model = Classifier(hidden_units=config.hidden_units, dropout=config.dropout,
                     output_bias=output_bias, seed=config.seed)
  model(tf.zeros([1, num_features], tf.float32))
  return model
