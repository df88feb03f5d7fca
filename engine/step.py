"""The compiled inner loop: training steps. Maths and metric updates only.

The Python outer loop (engine/loop.py) owns everything else. Many steps run per call
(`for _ in tf.range(num_steps)`), with the count passed as a tensor so nothing retraces.

Autograph converts only those loops. The replica functions, the model and the Keras metric
updates have no Python control flow on tensors, and converting them (autograph follows every
call, Keras' own code included) only made the first call's tracing slower.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from engine import losses, models


def make_train_loop(*, model, optimizer, strategy, metrics, class_weights, global_batch_size: int,
                    seed: int, jit_compile: bool = False, average=None, ema_momentum: float = 0.0,
                    per_example=None):
  """Returns `train_loop(iterator, num_steps)`, a tf.function running num_steps steps.

  With a model of independent members (`own_rows`), each element of the iterator holds
  `model.members` batches, one per member, one after the other: [members * batch, F], and
  member k trains on its own rows; otherwise every member scores the same batch.
  `global_batch_size` is one member's global batch; `per_example` the loss (engine/losses/,
  default bce). With `average` (a model of the same architecture), every step also moves its
  weights towards the model's (`update_average`).
  """
  cw = tf.constant(class_weights, tf.float32)
  num_replicas = strategy.num_replicas_in_sync
  members = model.members
  own_rows, per_example = bool(model.own_rows), per_example or losses.per_example_fn("bce")
  # Members that share weights train on the mean of their losses (engine/losses/__init__.py).
  members_mean = 1 if own_rows else members

  # With XLA this is one compiled cluster: forward, loss, gradients and the ten metric updates
  # (each a handful of small ops, far cheaper fused into the step than launched one by one).
  # The optimizer update stays outside: under tf.distribute it all-reduces the gradients.
  @tf.function(jit_compile=jit_compile, autograph=False)
  def compute(x, y, dropout_seed):
    with tf.GradientTape() as tape:
      logits = models.member_logits(model, x, training=True, dropout_seed=dropout_seed)
      y = tf.broadcast_to(y, tf.shape(logits))  # [K, B]: every member's labels.
      weights = tf.gather(cw, y)
      loss = losses.weighted_loss(per_example, y, logits, weights,
                                  global_batch_size=global_batch_size, members_mean=members_mean)
    grads = tape.gradient(loss, model.trainable_variables)
    metrics.update(tf.reshape(y, [-1]), tf.reshape(tf.sigmoid(logits), [-1]),
                   tf.reshape(per_example(tf.cast(y, logits.dtype), logits) * weights, [-1]))
    return grads

  @tf.autograph.experimental.do_not_convert
  def replica_step(batch):
    x, y = batch
    if own_rows:
      x = tf.reshape(x, [members, -1, x.shape[-1]])
      y = tf.reshape(y, [members, -1])
    else:
      y = y[tf.newaxis]
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
    # Stateless dropout seed: (run seed, global step * replicas + replica). Distinct per replica
    # and step, and the same again when a resumed run replays the step.
    dropout_seed = tf.stack([tf.constant(seed, tf.int64),
                             tf.cast(optimizer.iterations, tf.int64) * num_replicas + replica])
    grads = compute(x, y, dropout_seed)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  @tf.function
  def train_loop(iterator, num_steps):
    for _ in tf.range(num_steps):
      strategy.run(replica_step, args=(next(iterator),))
      if average is not None:
        update_average(strategy, average.trainable_variables, model.trainable_variables,
                       momentum=ema_momentum, step=optimizer.iterations)

  return train_loop


def update_average(strategy, averages, variables, *, momentum: float, step) -> None:
  """An exponential moving average of the weights: a <- a - (1 - momentum) (a - w).

  Called in cross-replica context after a step; `strategy.extended.update` applies it to each
  replica's copy (mirrored weights are equal on every replica after the update). The first
  step (`step` == 1 after it) copies the weights, as Keras' `use_ema` does.
  """
  rate = tf.where(tf.equal(step, 1), 1.0, 1.0 - momentum)
  for a, w in zip(averages, variables):
    # The tf.Variables under Keras' wrappers: the mirrored ones a strategy can update.
    a, w = (v.value if isinstance(v, keras.Variable) else v for v in (a, w))
    strategy.extended.update(a, lambda a, w: a.assign_sub(tf.cast(rate, a.dtype) * (a - w)),
                             args=(w,))
