"""Model families, one module each, found by name: `--model=NAME` imports `engine.models.NAME`.

The contract of a family's module (adding the file is the whole change):

  def build(layout, config) -> keras.layers.Layer

returns a layer (or model), its variables created, whose `call(x, training=False)` maps a
float32 batch x [B, F] to logits [B, K], one column per ensemble member. `layout`
(input_pipeline/layout.py) says what the F positions hold: numeric features, missing flags and
each categorical one-hot block, and the training split's quantiles of the numeric ones, so a
model can embed its inputs itself. Optional, found by signature:
  - `build(..., output_bias=b)`: the family places the strategy's initial bias (the log prior
    odds) in its own heads and exposes that variable as `output_bias`; otherwise the engine adds
    a bias of its own to every logit.
  - `call(..., dropout_seed=s)`: a [2] int64 seed, distinct per step and replica, passed in
    training for stateless dropout (engine/layers.py `replica_dropout`).
  - a class attribute `own_rows = True`: the members are independent (no shared weight), so
    each trains on rows of its own (x [K, B, F]) and keeps its own best weights.

Inside the engine logits are member-major, [K, B] (`member_logits`): the losses, metrics and
the members' mean read them that way.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import keras
import tensorflow as tf


def names() -> list[str]:
  """The model families there are: the modules of this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def family(name: str):
  """The module of family `name`; ValueError naming the known ones if there is none."""
  if name not in names():
    raise ValueError(f"no model family '{name}' (engine/models/{name}.py); known: "
                     f"{', '.join(names())}")
  return importlib.import_module(f"engine.models.{name}")


class WithBias(keras.Model):
  """A family's layer plus the engine's own output bias [K], for families that take none."""

  def __init__(self, net, *, members: int, output_bias: float, **kwargs):
    super().__init__(**kwargs)
    self.net = net
    self.members = members
    self.own_rows = bool(getattr(net, "own_rows", False))
    self._seeded = accepts(net.call, "dropout_seed")
    self.output_bias = self.add_weight(
        name="output_bias", shape=(members,),
        initializer=keras.initializers.Constant(output_bias))

  def call(self, x, training=False, dropout_seed=None):
    kwargs = {"dropout_seed": dropout_seed} if self._seeded else {}
    return self.net(x, training=training, **kwargs) + self.output_bias


def accepts(fn, keyword: str) -> bool:
  """Whether `fn` takes the keyword argument `keyword` (or any, through **kwargs)."""
  params = inspect.signature(fn).parameters.values()
  return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in params)


def build(config, layout, *, output_bias: float = 0.0):
  """The model `config.model` names, its variables created (call under the strategy's scope).

  The result has the attributes the engine reads: `members` (K), `own_rows` and
  `output_bias` (the variable the strategy's initial bias is in).

  Raises:
    ValueError: the family's output is not [B, K] logits.
  """
  module = family(config.model.name)
  if accepts(module.build, "output_bias"):
    model = module.build(layout, config, output_bias=output_bias)
  else:
    model = module.build(layout, config)
  probe = model(tf.zeros([2, layout.num_features], tf.float32), training=False)
  if probe.shape.rank != 2 or probe.shape[0] != 2:
    raise ValueError(f"model '{config.model.name}' maps [B, F] to {probe.shape}, not logits [B, K]")
  members = int(probe.shape[1])
  if not hasattr(model, "output_bias"):
    model = WithBias(model, members=members, output_bias=output_bias)
    model(tf.zeros([1, layout.num_features], tf.float32))
  model.members = members
  if not hasattr(model, "own_rows"):
    model.own_rows = False
  return model


def member_logits(model, x, *, training: bool = False, dropout_seed=None) -> tf.Tensor:
  """Logits [K, B] of `model` on rows x: the family's [B, K], member-major."""
  if training and dropout_seed is not None and accepts(model.call, "dropout_seed"):
    logits = model(x, training=True, dropout_seed=dropout_seed)
  else:
    logits = model(x, training=training)
  return tf.transpose(logits)
