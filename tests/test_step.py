import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from engine import losses, strategies
from engine.config import Config
from engine.metrics import Metrics
from engine.layers import replica_dropout
from tests.builders import build_model, logits, spec
from engine.step import make_train_loop
from input_pipeline import datasets
from tests.conftest import ROOT


def _separable(rows=4000, seed=0):
  rng = np.random.default_rng(seed)
  y = (rng.random(rows) < 0.5).astype(np.int64)
  x = rng.standard_normal((rows, 6)).astype(np.float32)
  x[:, 0] += np.where(y == 1, 2.5, -2.5)
  return x, y


def _setup(config, x, y):
  strategy = tf.distribute.get_strategy()
  model = build_model(config, num_features=x.shape[1], output_bias=0.0)
  optimizer = tf.keras.optimizers.Adam(config.learning_rate)
  optimizer.build(model.trainable_variables)
  metrics = Metrics()
  loop = make_train_loop(model=model, optimizer=optimizer, strategy=strategy, metrics=metrics,
                         class_weights=strategies.get(config.strategy).class_weights(np.bincount(y), 0.5),
                         global_batch_size=config.batch_size, seed=config.seed)
  ds = datasets.train_dataset(x, y, spec(strategy=config.strategy, batch_size=config.batch_size,
                              chunk=config.oversample_chunk, seed=config.seed))
  return model, optimizer, metrics, loop, iter(ds)


def test_loss_halves_on_separable_data():
  config = Config(batch_size=256, learning_rate=1e-2, dropout=0.0, strategy="baseline")
  x, y = _separable()
  model, optimizer, metrics, loop, it = _setup(config, x, y)
  loop(it, tf.constant(5))
  first = metrics.result()["loss"]
  metrics.reset()
  loop(it, tf.constant(200))
  metrics.reset()
  loop(it, tf.constant(5))
  last = metrics.result()
  assert int(optimizer.iterations.numpy()) == 210
  assert last["loss"] < first / 2
  assert last["auc_streaming"] > 0.98
  # Metrics count every example of the steps since the reset.
  assert last["tp"] + last["fp"] + last["tn"] + last["fn"] == 5 * 256


def test_the_step_count_is_a_tensor_so_nothing_retraces():
  config = Config(batch_size=128, strategy="oversample")
  x, y = _separable(1000)
  _, optimizer, _, loop, it = _setup(config, x, y)
  for n in (1, 3, 7):
    loop(it, tf.constant(n))
  assert int(optimizer.iterations.numpy()) == 11
  assert loop.experimental_get_tracing_count() == 1



class _SameBatch:
  def __init__(self, batch):
    self.batch = batch

  def __next__(self):
    return self.batch


def test_class_weights_weigh_each_example_by_its_own_class():
  # One step on a fixed batch: the training loss metric is the mean of each example's loss
  # times the weight of its own class, computed before the update.
  config = Config(batch_size=8, dropout=0.0, strategy="class_weight")
  x, y = _separable(8)
  y[:2], y[2:] = 1, 0
  model = build_model(config, num_features=6, output_bias=0.0)
  optimizer = tf.keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  metrics = Metrics()
  weights = np.array([0.5, 7.0], np.float32)  # [negative, positive]
  loop = make_train_loop(model=model, optimizer=optimizer, strategy=tf.distribute.get_strategy(),
                         metrics=metrics, class_weights=weights, global_batch_size=8,
                         seed=0)
  batch = (tf.constant(x), tf.constant(y, tf.int32))
  per_example = losses.per_example_fn("bce")(tf.cast(y[None], tf.float32), logits(model, x)).numpy()[0]
  loop(_SameBatch(batch), tf.constant(1))
  expected = float(np.mean(per_example * weights[y]))
  assert metrics.result()["loss"] == pytest.approx(expected, rel=1e-5)


def _trained(jit_compile: bool, steps: int = 200):
  config = Config(batch_size=256, learning_rate=1e-2, dropout=0.5, strategy="baseline",
                  hidden_units=(16,))
  x, y = _separable(2000)
  model = build_model(config, num_features=6, output_bias=0.0)
  optimizer = tf.keras.optimizers.Adam(config.learning_rate)
  optimizer.build(model.trainable_variables)
  metrics = Metrics()
  loop = make_train_loop(model=model, optimizer=optimizer, strategy=tf.distribute.get_strategy(),
                         metrics=metrics, class_weights=np.ones(2, np.float32),
                         global_batch_size=256, seed=3, jit_compile=jit_compile)
  it = iter(datasets.train_dataset(x, y, spec(strategy="baseline", batch_size=256, chunk=64, seed=3)))
  loop(it, tf.constant(steps))
  metrics.reset()
  loop(it, tf.constant(20))
  return model, metrics.result()


def test_the_compiled_step_draws_masks_alike_and_trains_like_the_plain_one():
  # The masks are the same bits with and without XLA (Philox's 32-bit words, split in two).
  seed = tf.constant([3, 17], tf.int64)
  x = tf.ones([512, 63])
  compiled_dropout = tf.function(lambda t, s: replica_dropout(t, 0.3, s), jit_compile=True)
  plain, compiled = replica_dropout(x, 0.3, seed).numpy(), compiled_dropout(x, seed).numpy()
  np.testing.assert_array_equal(compiled, plain)
  assert abs((plain > 0).mean() - 0.7) < 0.01
  # 220 steps on the same stream from the same weights and masks: the same training, up to
  # floating-point order (XLA fuses and reorders the sums; measured 2e-7 apart in the weights).
  (a, ra), (b, rb) = _trained(False), _trained(True)
  for wa, wb in zip(a.get_weights(), b.get_weights()):
    np.testing.assert_allclose(wa, wb, atol=1e-4)
  for name in ("loss", "auc_streaming", "prc_streaming"):
    assert ra[name] == pytest.approx(rb[name], rel=1e-4)
  for name in ("tp", "fp", "tn", "fn"):  # A prediction within 1e-6 of 0.5 could flip one.
    assert abs(ra[name] - rb[name]) <= 2
  x_eval, y_eval = _separable(2000, seed=1)
  from sklearn.metrics import roc_auc_score
  assert roc_auc_score(y_eval, logits(a, x_eval)[0]) > 0.98
  # Both count every example of the last 20 steps.
  assert ra["tp"] + ra["fp"] + ra["tn"] + ra["fn"] == rb["tp"] + rb["fp"] + rb["tn"] + rb["fn"]


def test_each_member_of_an_ensemble_trains_exactly_as_it_would_alone():
  # Member k of seed s starts from the weights of a single model of seed s + 7919 k, and its
  # rows are the k-th block of the batch: one SGD step (its update is the gradient itself, so
  # any scaling of a member's loss shows) must give each member the single model's weights.
  x, y = _separable(512)
  batch = (tf.constant(x), tf.constant(y, tf.int32))

  def step(config):
    model = build_model(config, num_features=6, output_bias=0.0)
    optimizer = tf.keras.optimizers.SGD(0.5)
    optimizer.build(model.trainable_variables)
    loop = make_train_loop(model=model, optimizer=optimizer,
                           strategy=tf.distribute.get_strategy(), metrics=Metrics(),
                           class_weights=np.ones(2, np.float32), global_batch_size=256, seed=0)
    loop(_SameBatch(config_batch[config.ensemble, config.seed]), tf.constant(1))
    return [w.copy() for w in model.get_weights()]

  base = Config(batch_size=256, dropout=0.0, strategy="baseline", hidden_units=(8,))
  config_batch = {(2, 0): batch, (1, 0): tuple(t[:256] for t in batch),
                  (1, 7919): tuple(t[256:] for t in batch)}
  ensemble = step(base.replace(ensemble=2))
  for k, seed in enumerate((0, 7919)):
    alone = step(base.replace(seed=seed))
    for e, a in zip(ensemble, alone):
      np.testing.assert_allclose(e[k], a[0], rtol=1e-5, atol=1e-6)


def test_the_moving_average_follows_the_weights_step_by_step():
  # Weights read after every step, averaged by hand: the first step copies them, each later one
  # moves the average (1 - momentum) of the way towards them.
  config = Config(batch_size=128, learning_rate=1e-2, dropout=0.2, strategy="oversample",
                  hidden_units=(8,), ensemble=2)
  x, y = _separable(1000)
  model, optimizer, _, _, it = _setup(config, x, y)
  average = build_model(config, num_features=6, output_bias=0.0)
  loop = make_train_loop(model=model, optimizer=optimizer, strategy=tf.distribute.get_strategy(),
                         metrics=Metrics(), class_weights=np.ones(2, np.float32),
                         global_batch_size=128, seed=0, average=average, ema_momentum=0.9)
  expected = None
  for _ in range(6):
    loop(it, tf.constant(1))
    weights = model.get_weights()
    expected = weights if expected is None else [0.9 * e + 0.1 * w
                                                 for e, w in zip(expected, weights)]
  assert not np.allclose(expected[0], weights[0])  # The average lags: it is not the weights.
  for got, want in zip(average.get_weights(), expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


MIRRORED_AVERAGE = """
import numpy as np, tensorflow as tf
from engine import distribute
from engine.config import Config
from engine.metrics import Metrics
from tests.builders import build_model, logits, spec
from engine.step import make_train_loop
from input_pipeline import datasets
distribute.split_cpu(2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = Config(model="mlp", batch_size=128, strategy="baseline", hidden_units=(8,), ensemble=2)
rng = np.random.default_rng(0)
y = (rng.random(1000) < 0.5).astype(np.int64)
x = rng.standard_normal((1000, 6)).astype(np.float32) + y[:, None]
with strategy.scope():
  model = build_model(config, num_features=6, output_bias=0.0)
  average = build_model(config, num_features=6, output_bias=0.0)
  optimizer = tf.keras.optimizers.Adam(1e-2)
  optimizer.build(model.trainable_variables)
  metrics = Metrics()
loop = make_train_loop(model=model, optimizer=optimizer, strategy=strategy, metrics=metrics,
                       class_weights=np.ones(2, np.float32), global_batch_size=128, seed=0,
                       average=average, ema_momentum=0.8)
it = iter(strategy.experimental_distribute_dataset(
    datasets.train_dataset(x, y, spec(strategy="baseline", batch_size=256, chunk=64, seed=0))))
expected = None
for _ in range(5):
  loop(it, tf.constant(1))
  weights = model.get_weights()
  expected = weights if expected is None else [0.8 * e + 0.2 * w for e, w in zip(expected, weights)]
for got, want in zip(average.get_weights(), expected):
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
for v in average.weights:  # Each replica's copy holds the same average.
  copies = [c.numpy() for c in v.value.values]
  assert len(copies) == 2 and all(np.array_equal(copies[0], c) for c in copies), v.name
print("OK")
"""


def test_the_moving_average_is_the_same_on_two_mirrored_replicas():
  # Logical devices must be set before TensorFlow starts: a process of its own.
  proc = subprocess.run([sys.executable, "-c", MIRRORED_AVERAGE], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def test_members_that_share_weights_train_on_the_mean_of_their_losses():
  # One SGD step of lr 1 moves a shared kernel by minus its gradient: the gradient of the mean
  # of the K members' mean losses (TabM's), not of their sum.
  from engine import models
  from input_pipeline.layout import numeric_only

  class Shared(tf.keras.layers.Layer):  # [B, F] -> [B, 2]: one kernel, two members' scalings
    def build(self, shape):
      self.w = self.add_weight(shape=(shape[-1], 1), initializer="ones")
    def call(self, x):
      return tf.matmul(x, self.w) * tf.constant([[1.0, -0.5]])

  config = Config(batch_size=256, strategy="baseline", dropout=0.0)
  original = models.family
  models.family = lambda name: type("m", (), {"build": staticmethod(lambda l, c: Shared())})
  try:
    model = models.build(config, numeric_only(6), output_bias=0.0)
  finally:
    models.family = original
  x, y = _separable(256)
  before = model.net.w.numpy().copy()
  with tf.GradientTape() as tape:
    member_logits = tf.transpose(model(tf.constant(x)))
    labels = tf.broadcast_to(tf.constant(y, tf.float32)[None], member_logits.shape)
    mean_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, member_logits))
  expected = before - tape.gradient(mean_loss, model.net.w).numpy()
  optimizer = tf.keras.optimizers.SGD(1.0)
  optimizer.build(model.trainable_variables)
  loop = make_train_loop(model=model, optimizer=optimizer, strategy=tf.distribute.get_strategy(),
                         metrics=Metrics(), class_weights=np.ones(2, np.float32),
                         global_batch_size=256, seed=0)
  loop(_SameBatch((tf.constant(x), tf.constant(y, tf.int32))), tf.constant(1))
  np.testing.assert_allclose(model.net.w.numpy(), expected, rtol=1e-5, atol=1e-6)
