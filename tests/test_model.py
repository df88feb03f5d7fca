import numpy as np
import pytest
import tensorflow as tf

from engine.config import Config
from engine.layers import replica_dropout
from tests.builders import build_model, logits


def test_shapes_bias_and_seeded_init():
  config = Config(hidden_units=(8, 4))
  model = build_model(config, num_features=5, output_bias=-3.0)
  assert [v.shape for v in model.trainable_variables] == [(1, 5, 8), (1, 8), (1, 8, 4), (1, 4),
                                                          (1, 4, 1), (1, 1)]
  assert np.allclose(model.output_bias.numpy(), -3.0)
  again = build_model(config, num_features=5, output_bias=-3.0)
  assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
  other = build_model(config.replace(seed=1), num_features=5, output_bias=-3.0)
  assert not np.array_equal(model.get_weights()[0], other.get_weights()[0])
  assert model(tf.zeros([7, 5])).shape == (7, 1)  # [rows, members]
  assert logits(model, tf.zeros([7, 5])).shape == (1, 7)  # member-major inside the engine


def test_dropout_masks_depend_on_the_seed_only():
  x = tf.ones([64, 16])
  a = replica_dropout(x, 0.5, tf.constant([0, 10], tf.int64))
  b = replica_dropout(x, 0.5, tf.constant([0, 10], tf.int64))
  c = replica_dropout(x, 0.5, tf.constant([0, 11], tf.int64))  # the next replica or step
  assert np.array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(a.numpy() > 0, c.numpy() > 0)
  kept = (a.numpy() > 0).mean()
  assert 0.4 < kept < 0.6
  assert np.allclose(a.numpy()[a.numpy() > 0], 2.0)  # inverted dropout keeps the expectation


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.75])
def test_dropout_drops_its_rate_and_keeps_the_expectation_exactly(rate):
  # 16-bit draws: the rate rounds to a multiple of 1/65536 and the kept units are scaled by the
  # rounded rate, so E[dropout(x)] = x exactly. Odd sizes use half of the last 32-bit word.
  x = tf.fill([257, 129], 3.0)
  out = replica_dropout(x, rate, tf.constant([4, 2], tf.int64)).numpy()
  kept = out > 0
  assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / kept.size)
  dropped = round(rate * 65536)
  np.testing.assert_array_equal(out[kept], np.float32(3.0) * np.float32(65536 / (65536 - dropped)))
  # The expectation, over all seeds' masks: within the noise of 40 masks of 33k units.
  means = [replica_dropout(x, rate, tf.constant([4, s], tf.int64)).numpy().mean() for s in range(40)]
  assert abs(np.mean(means) - 3.0) < 4 * 3.0 * np.sqrt(rate / (1 - rate) / (40 * kept.size))


def test_dropout_only_in_training():
  model = build_model(Config(), num_features=3, output_bias=0.0)
  x = tf.random.stateless_normal([32, 3], seed=[1, 2])
  assert np.array_equal(model(x).numpy(), model(x, training=False).numpy())
  seed = tf.constant([0, 5], tf.int64)
  assert not np.array_equal(model(x, training=True, dropout_seed=seed).numpy(), model(x).numpy())
