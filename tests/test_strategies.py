"""The imbalance strategies: class weights, initial bias, logit shift, stream share."""

import math

import numpy as np
import pytest

from engine import strategies


@pytest.mark.parametrize("strategy,expected", [
    ("class_weight", [100 / (2 * 98), 100 / (2 * 2)]),
    ("baseline", [1.0, 1.0]),
    ("oversample", [1.0, 1.0]),
])
def test_class_weights(strategy, expected):
  assert np.allclose(strategies.get(strategy).class_weights([98, 2], 0.5), expected)


def test_class_weights_give_each_class_half_the_total_weight():
  w = strategies.get("class_weight").class_weights([993, 7], 0.5)
  assert math.isclose(7 * w[1], 993 * w[0], rel_tol=1e-6)
  assert math.isclose(7 * w[1] + 993 * w[0], 1000, rel_tol=1e-6)


@pytest.mark.parametrize("strategy,fraction,expected", [
    ("baseline", 0.5, math.log(2 / 98)), ("baseline", 0.1, math.log(2 / 98)),
    ("class_weight", 0.5, 0.0), ("class_weight", 0.1, math.log(0.1 / 0.9)),
    ("oversample", 0.5, 0.0), ("oversample", 0.2, math.log(0.2 / 0.8))])
def test_initial_bias_is_the_base_rate_the_loss_sees(strategy, fraction, expected):
  assert math.isclose(strategies.get(strategy).initial_bias([98, 2], fraction), expected)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.02])
def test_class_weights_give_the_positives_their_share_of_the_weight(fraction):
  w = strategies.get("class_weight").class_weights([993, 7], fraction)
  assert math.isclose(7 * w[1], fraction * 1000, rel_tol=1e-6)
  assert math.isclose(993 * w[0], (1 - fraction) * 1000, rel_tol=1e-6)


@pytest.mark.parametrize("strategy,fraction", [("oversample", 0.5), ("oversample", 0.1),
                                               ("class_weight", 0.5), ("class_weight", 0.05)])
def test_logit_shift_maps_the_training_prior_back_to_the_real_one(strategy, fraction):
  # A model that fits its training distribution predicts, for an uninformative row, the base
  # rate its loss saw; shifted, it predicts the real base rate of the data.
  counts = [993, 7]
  seen = strategies.get(strategy).initial_bias(counts, fraction)  # the logit of the training prior
  shifted = seen + strategies.get(strategy).logit_shift(counts, fraction)
  assert math.isclose(1 / (1 + math.exp(-shifted)), 7 / 1000, rel_tol=1e-6)  # float32 weights
  assert strategies.get("baseline").logit_shift(counts, fraction) == 0.0


def test_only_oversample_changes_the_stream():
  assert strategies.get("oversample").stream_share(0.02) == 0.02
  assert strategies.get("baseline").stream_share(0.02) is None
  assert strategies.get("class_weight").stream_share(0.02) is None


@pytest.mark.parametrize("counts,expected", [
    ([970, 30], 0.09),          # a 3% table: three times its rate
    ([182_276 - 315, 315], 3 * 315 / 182_276),  # the credit-card training split
    ([400, 600], 0.5),          # never more than half
])
def test_the_default_share_follows_the_tables_fraud_rate(counts, expected):
  assert strategies.positive_share(counts, None) == pytest.approx(expected)
  assert strategies.positive_share(counts, 0.6) == 0.6


def test_a_share_below_the_fraud_rate_is_refused():
  with pytest.raises(ValueError, match="positive_fraction=0.005.*below the training split's fraud "
                                       "rate 0.03"):
    strategies.positive_share([970, 30], 0.005)


@pytest.mark.parametrize("counts", [[970, 30], [99_000, 1_000], [182_276 - 315, 315]])
def test_no_strategy_gives_frauds_less_than_plain_training_by_default(counts):
  share = strategies.positive_share(counts, None)
  rate = counts[1] / sum(counts)
  w_neg, w_pos = strategies.get("class_weight").class_weights(counts, share)
  assert w_pos >= 1.0 >= w_neg  # a fraud weighs at least as much as in plain training
  assert strategies.get("oversample").stream_share(share) >= rate  # and is drawn as often
