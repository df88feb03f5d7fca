"""`--model=mlp`, the small, fast family (its defaults are the config fields' own; tabm is the
default family): an ensemble of K members, each Dense(relu) layers with
replica-aware dropout and one logit out, trained side by side as stacked weights (one batched
matmul per layer).

A member is an ordinary MLP; stacking K of them turns K small matmuls into one [K, B, in] x
[K, in, out] product, so an ensemble costs far less than K runs on hardware the single model
leaves idle (a 2-core CPU included: the step is dominated by per-op overhead, not FLOPs). Each
member has its own initial weights, dropout masks and training rows; they share nothing but the
step. `--ensemble=1` (one member) is a plain MLP.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from engine.layers import StackedDense, replica_dropout


class Classifier(keras.Model):
  """K members of Dense(units, relu) [-> dropout] ... -> Dense(1): logits [batch, K].

  `own_rows`: the members are independent, so each may train on rows of its own: the engine
  feeds [K, B, F] (member k's rows at [k]) and keeps each member's best weights apart.
  """

  own_rows = True

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

  @property
  def output_bias(self):
    """The logit layer's bias [K, 1]: where the strategy's initial bias goes."""
    return self.logit.bias

  def call(self, x, training=False, dropout_seed=None):
    """Logits [B, K] of rows [B, F] (every member scores every row) or of [K, B, F] (each its
    own rows: column k holds member k's logits of rows x[k]).

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
    return logits[:, tf.newaxis] if single else tf.transpose(logits)


def build(layout, config, *, output_bias: float = 0.0) -> Classifier:
  """The classifier of `config.hidden_units`, `config.dropout` and `config.ensemble` members,
  its variables created (call under the strategy's scope)."""
  model = Classifier(hidden_units=config.hidden_units, dropout=config.dropout,
                     output_bias=output_bias, seed=config.seed, members=config.ensemble)
  model(tf.zeros([1, layout.num_features], tf.float32))
  return model
