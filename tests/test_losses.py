import math

import numpy as np
import pytest
import tensorflow as tf

from engine import losses


@pytest.mark.parametrize("strategy,expected", [
    ("class_weight", [100 / (2 * 98), 100 / (2 * 2)]),
    ("baseline", [1.0, 1.0]),
    ("oversample", [1.0, 1.0]),
])
def test_class_weights(strategy, expected):
  assert np.allclose(losses.class_weights([98, 2], strategy), expected)


def test_class_weights_give_each_class_half_the_total_weight():
  w = losses.class_weights([993, 7], "class_weight")
  assert math.isclose(7 * w[1], 993 * w[0], rel_tol=1e-6)
  assert math.isclose(7 * w[1] + 993 * w[0], 1000, rel_tol=1e-6)


@pytest.mark.parametrize("strategy,fraction,expected", [
    ("baseline", 0.5, math.log(2 / 98)), ("baseline", 0.1, math.log(2 / 98)),
    ("class_weight", 0.5, 0.0), ("class_weight", 0.1, math.log(0.1 / 0.9)),
    ("oversample", 0.5, 0.0), ("oversample", 0.2, math.log(0.2 / 0.8))])
def test_initial_bias_is_the_base_rate_the_loss_sees(strategy, fraction, expected):
  assert math.isclose(losses.initial_bias([98, 2], strategy, fraction), expected)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.02])
def test_class_weights_give_the_positives_their_share_of_the_weight(fraction):
  w = losses.class_weights([993, 7], "class_weight", fraction)
  assert math.isclose(7 * w[1], fraction * 1000, rel_tol=1e-6)
  assert math.isclose(993 * w[0], (1 - fraction) * 1000, rel_tol=1e-6)


@pytest.mark.parametrize("strategy,fraction", [("oversample", 0.5), ("oversample", 0.1),
                                               ("class_weight", 0.5), ("class_weight", 0.05)])
def test_logit_shift_maps_the_training_prior_back_to_the_real_one(strategy, fraction):
  # A model that fits its training distribution predicts, for an uninformative row, the base
  # rate its loss saw; shifted, it predicts the real base rate of the data.
  counts = [993, 7]
  seen = losses.initial_bias(counts, strategy, fraction)  # the logit of the training prior
  shifted = seen + losses.logit_shift(counts, strategy, fraction)
  assert math.isclose(1 / (1 + math.exp(-shifted)), 7 / 1000, rel_tol=1e-6)  # float32 weights
  assert losses.logit_shift(counts, "baseline", fraction) == 0.0


def test_per_example_loss_matches_the_formula_and_is_stable():
  logits = tf.constant([-100.0, 0.0, 3.0, 100.0])
  labels = tf.constant([1, 0, 1, 0])
  got = losses.per_example_loss(labels, logits).numpy()
  p = 1 / (1 + np.exp(-np.array([0.0, 3.0])))
  assert np.allclose(got[1:3], [-np.log(1 - p[0]), -np.log(p[1])], rtol=1e-6)
  assert np.isfinite(got).all() and np.allclose(got[[0, 3]], 100.0)


def test_weighted_loss_divides_by_the_global_batch_once():
  labels = tf.constant([0, 1, 0, 1])
  logits = tf.constant([0.5, -0.5, 1.0, 2.0])
  weights = tf.constant([1.0, 3.0, 1.0, 3.0])
  per = losses.per_example_loss(labels, logits) * weights
  # One replica holding the whole batch: the plain mean.
  assert np.isclose(losses.weighted_loss(labels, logits, weights, 4).numpy(),
                    per.numpy().mean())
  # Two replicas holding half each: each share divides by the global size; shares add up.
  share = [losses.weighted_loss(labels[i:i + 2], logits[i:i + 2], weights[i:i + 2], 4).numpy()
           for i in (0, 2)]
  assert np.isclose(sum(share), per.numpy().mean())
