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

from engine import losses


def make_train_loop(*, model, optimizer, strategy, metrics, class_weights, global_batch_size: int,
                    seed: int, jit_compile: bool = False, average=None, ema_momentum: float = 0.0):
  """Returns `train_loop(iterator, num_steps)`, a tf.function running num_steps steps.

  Each element of the iterator holds `model.members` batches, one per member of the ensemble,
  one after the other: [members * batch, F]. Member k trains on its own rows.
  `global_batch_size` is one member's global batch. With `average` (a model of the same
  architecture), every step also moves its weights towards the model's (`update_average`).
  """
  cw = tf.constant(class_weights, tf.float32)
  num_replicas = strategy.num_replicas_in_sync
  members = model.members

  # With XLA this is one compiled cluster: forward, loss, gradients and the ten metric updates
  # (each a handful of small ops, far cheaper fused into the step than launched one by one).
  # The optimizer update stays outside: under tf.distribute it all-reduces the gradients.
  @tf.function(jit_compile=jit_compile, autograph=False)
  def compute(x, y, dropout_seed):
    with tf.GradientTape() as tape:
      logits = model(x, training=True, dropout_seed=dropout_seed)
      weights = tf.gather(cw, y)
      # The members' losses add up: each member's parameters get the gradient of its own
      # mean loss, exactly as if it trained alone.
      loss = losses.weighted_loss(y, logits, weights, global_batch_size)
    grads = tape.gradient(loss, model.trainable_variables)
    metrics.update(tf.reshape(y, [-1]), tf.reshape(tf.sigmoid(logits), [-1]),
                   tf.reshape(losses.per_example_loss(y, logits) * weights, [-1]))
    return grads

  @tf.autograph.experimental.do_not_convert
  def replica_step(batch):
    x, y = batch
    x = tf.reshape(x, [members, -1, x.shape[-1]])
    y = tf.reshape(y, [members, -1])
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
