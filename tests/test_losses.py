"""The losses (engine/losses/): found by name, per-example values, the engine's weighting."""

import numpy as np
import pytest
import tensorflow as tf

from engine import losses

BCE = losses.per_example_fn("bce")


def test_per_example_loss_matches_the_formula_and_is_stable():
  logits = tf.constant([-100.0, 0.0, 3.0, 100.0])
  labels = tf.constant([1, 0, 1, 0])
  got = losses.per_example_fn("bce")(labels, logits).numpy()
  p = 1 / (1 + np.exp(-np.array([0.0, 3.0])))
  assert np.allclose(got[1:3], [-np.log(1 - p[0]), -np.log(p[1])], rtol=1e-6)
  assert np.isfinite(got).all() and np.allclose(got[[0, 3]], 100.0)


def test_weighted_loss_divides_by_the_global_batch_once():
  labels = tf.constant([0, 1, 0, 1])
  logits = tf.constant([0.5, -0.5, 1.0, 2.0])
  weights = tf.constant([1.0, 3.0, 1.0, 3.0])
  per = losses.per_example_fn("bce")(labels, logits) * weights
  # One replica holding the whole batch: the plain mean.
  assert np.isclose(losses.weighted_loss(BCE, labels, logits, weights, global_batch_size=4).numpy(),
                    per.numpy().mean())
  # Two replicas holding half each: each share divides by the global size; shares add up.
  share = [losses.weighted_loss(BCE, labels[i:i + 2], logits[i:i + 2],
                               weights[i:i + 2], global_batch_size=4).numpy()
           for i in (0, 2)]
  assert np.isclose(sum(share), per.numpy().mean())


def test_members_that_share_weights_train_on_the_mean_of_their_losses():
  labels = tf.constant([[0.0, 1.0], [0.0, 1.0]])
  logits = tf.constant([[0.5, -0.5], [1.0, 2.0]])
  weights = tf.ones([2, 2])
  total = losses.weighted_loss(BCE, labels, logits, weights, global_batch_size=2)
  mean = losses.weighted_loss(BCE, labels, logits, weights, global_batch_size=2, members_mean=2)
  assert np.isclose(total.numpy(), 2 * mean.numpy())
  assert np.isclose(mean.numpy(), BCE(labels, logits).numpy().mean())


def test_the_focal_loss_is_bce_scaled_down_for_easy_examples():
  focal = losses.per_example_fn("focal")
  labels = tf.constant([1.0, 1.0, 0.0])
  logits = tf.constant([4.0, -4.0, 0.0])
  bce, got = BCE(labels, logits).numpy(), focal(labels, logits).numpy()
  p_true = 1 / (1 + np.exp(-np.array([4.0, -4.0]))), 0.5
  np.testing.assert_allclose(got[:2], (1 - p_true[0]) ** 2 * bce[:2], rtol=1e-5)
  np.testing.assert_allclose(got[2], 0.25 * bce[2], rtol=1e-5)
  assert got[0] < 0.01 * bce[0] and got[1] > 0.9 * bce[1]  # easy ones fall away, hard ones stay


def test_a_loss_is_found_by_its_module_name():
  assert {"bce", "focal"} <= set(losses.names())
  with pytest.raises(ValueError, match="no loss 'nope'.*known: bce"):
    losses.per_example_fn("nope")
