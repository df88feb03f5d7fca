"""The trainer, driven in-process on a tiny in-memory `Data`: no subprocess, no model directory."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from engine import calibration, evaluation, strategies
from engine import state as train_state
from engine.config import Config
from engine.trainer import Trainer, train_iterator
from input_pipeline import preprocessing
from input_pipeline.data import InMemoryData
from tests.builders import logits
from tests.conftest import small_frame


def _trainer(strategy_name="baseline", **overrides):
  config = Config(**{"strategy": strategy_name, "batch_size": 128, "learning_rate": 1e-2,
                     "dropout": 0.0, "steps_per_loop": 10, **overrides})
  data = InMemoryData(preprocessing.split_and_encode(small_frame(3000, 90, seed=4), config))
  strategy = tf.distribute.get_strategy()
  state = train_state.create(
      config, layout=data.layout(config.seed), strategy=strategy,
      output_bias=strategies.get(config.strategy).initial_bias(
          data.class_counts(),
          strategies.positive_share(data.class_counts(), config.positive_fraction)))
  return Trainer(config, data, state, strategy), data, state


@pytest.mark.parametrize("strategy_name", ["baseline", "class_weight", "oversample"])
def test_train_runs_the_steps_and_the_loss_falls(strategy_name):
  trainer, _, state = _trainer(strategy_name)
  first, seconds = trainer.train(5)
  assert state.step == 5 and seconds > 0
  trainer.train(200)
  last, _ = trainer.train(5)
  assert state.step == 210
  assert last["loss"] < first["loss"] / 2
  # The metrics count the examples of the last call's steps only.
  assert last["tp"] + last["fp"] + last["tn"] + last["fn"] == 5 * 128


def test_train_stops_between_compiled_calls_when_asked():
  trainer, _, state = _trainer()
  calls = []
  trainer.train(100, stop=lambda: calls.append(1) or len(calls) > 3)
  assert state.step == 30  # three calls of steps_per_loop=10 ran, the fourth was refused


def test_evaluate_scores_a_split_once_for_streaming_and_exact_metrics():
  trainer, data, state = _trainer()
  trainer.train(50)
  scores = trainer.score("validation")
  labels = scores.labels
  assert len(labels) == data.counts()["validation"]["rows"]
  # The scores are the trained model's own, prior-corrected, before any calibration.
  x = data.splits.x_val
  raw = evaluation.probabilities(logits(state.evaluated_model, x))
  np.testing.assert_allclose(scores.probabilities, raw, rtol=0, atol=1e-6)
  fitted = calibration.fit(labels, scores.probabilities)
  assert fitted.method == "platt"
  result = trainer.evaluate(scores, fitted)
  metrics, probs = result.metrics, result.probabilities
  assert result.calibration == fitted and np.array_equal(result.labels, labels)
  assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == len(labels)
  # `auc` and `prc` are exact, sklearn's over the same predictions; Keras' 200-threshold
  # estimates have their own names.
  assert metrics["auc"] == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-9)
  assert metrics["prc"] == pytest.approx(skm.average_precision_score(labels, probs), abs=1e-9)
  assert {"auc_streaming", "prc_streaming", "brier"} <= set(metrics)
  assert not {"auc_exact", "prc_exact"} & set(metrics)
  # Calibrated by the calibration it is given, ranking kept.
  np.testing.assert_allclose(probs, calibration.apply(raw, fitted), rtol=0, atol=1e-6)
  assert np.abs(probs - raw).max() > 1e-3  # The calibration moved them, so the test can tell.
  assert result.member_areas == [{"auc": metrics["auc"], "prc": metrics["prc"]}]
  assert metrics["tp"] == int(((probs >= 0.5) & (labels == 1)).sum())
  assert metrics["loss"] == pytest.approx(skm.log_loss(labels, probs), rel=1e-6)
  # Pure: the same scores and calibration give the same metrics; another calibration, others.
  assert trainer.evaluate(scores, fitted).metrics == metrics
  assert trainer.evaluate(trainer.score("validation"), fitted).metrics == metrics
  identity = trainer.evaluate(scores, calibration.IDENTITY)
  np.testing.assert_array_equal(identity.probabilities, scores.probabilities)
  assert identity.metrics["loss"] != metrics["loss"]
  assert trainer.evaluate(scores, fitted).metrics == metrics  # Nothing was kept in between.
  test = trainer.evaluate(trainer.score("test"), fitted)
  np.testing.assert_allclose(test.probabilities, calibration.apply(evaluation.probabilities(
      logits(state.evaluated_model, data.splits.x_test)), fitted), atol=1e-6)
  assert set(test.metrics) == set(metrics)
  assert test.metrics["tp"] + test.metrics["fn"] == data.counts()["test"]["positives"]


def test_out_of_fold_scores_replace_only_the_metrics_a_fit_flatters():
  trainer, _, _ = _trainer()
  trainer.train(50)
  scores = trainer.score("validation")
  fitted = calibration.fit(scores.labels, scores.probabilities)
  out_of_fold = calibration.cross_fitted(scores.labels, scores.probabilities, fitted)
  whole = trainer.evaluate(scores, fitted).metrics
  crossed = trainer.evaluate(scores, fitted, out_of_fold=out_of_fold).metrics
  held_out = evaluation.exact_metrics(scores.labels, out_of_fold)
  for name in whole:
    expected = held_out[name] if name in calibration.CROSS_FITTED else whole[name]
    assert crossed[name] == expected, name
  assert crossed["loss"] != whole["loss"]  # The test can tell the two apart.


def test_evaluate_with_the_identity_keeps_the_prior_corrected_scores():
  trainer, data, state = _trainer("oversample")
  trainer.train(50)
  result = trainer.evaluate(trainer.score("validation"), calibration.IDENTITY)
  np.testing.assert_array_equal(result.probabilities, evaluation.probabilities(
      logits(state.evaluated_model, data.splits.x_val), trainer.logit_shift))


def test_with_a_moving_average_the_average_is_scored_not_the_weights():
  trainer, data, state = _trainer(ema_momentum=0.9)
  assert state.evaluated_model is state.average_model
  trainer.train(30)
  probs = trainer.score("validation").probabilities
  x = data.splits.x_val
  average = evaluation.probabilities(logits(state.average_model, x))
  weights = evaluation.probabilities(logits(state.model, x))
  np.testing.assert_allclose(probs, average, rtol=0, atol=1e-6)
  assert np.abs(average - weights).max() > 1e-3  # The two differ, so the test can tell.
  assert "average_model" in state.checkpointed()
  assert "average_model" not in _trainer()[2].checkpointed()


def test_an_ensemble_trains_its_members_on_their_own_rows_in_one_step():
  trainer, data, state = _trainer(ensemble=3, dropout=0.2)
  before = [v.numpy().copy() for v in state.model.trainable_variables]
  first, _ = trainer.train(5)
  assert first["tp"] + first["fp"] + first["tn"] + first["fn"] == 5 * 128 * 3
  kernel = state.model.dense_0.kernel.numpy()
  assert kernel.shape[0] == 3 and not np.allclose(kernel[0], kernel[1])  # own initial weights
  trainer.train(200)
  last, _ = trainer.train(5)
  assert last["loss"] < first["loss"] / 2
  assert all(not np.array_equal(a, v.numpy()) for a, v in zip(before, state.model.trainable_variables))
  scores = trainer.score("validation")
  result = trainer.evaluate(scores, calibration.IDENTITY)
  assert len(result.member_areas) == 3
  # The ensemble's probability is the mean of its members' probabilities.
  member_logits = logits(state.model, data.splits.x_val)
  np.testing.assert_allclose(result.probabilities,
                             evaluation.member_probabilities(member_logits).mean(axis=0),
                             atol=1e-6)
  for k in range(3):
    p_k = evaluation.member_probabilities(member_logits)[k]
    assert result.member_areas[k]["prc"] == pytest.approx(
        skm.average_precision_score(result.labels, p_k), abs=1e-6)


@pytest.mark.parametrize("strategy_name,positive_fraction", [
    ("class_weight", 0.5), ("class_weight", 0.05), ("class_weight", 0.1), ("baseline", 0.5)])
def test_the_step_weighs_each_example_by_its_own_class(strategy_name, positive_fraction):
  # At logit 0 an example's training loss is log 2 times its class's weight. The class weights
  # give the positives a share q of the total weight and the negatives 1 - q, each spread over
  # its class: over one pass of the training rows (the unoversampled streams are passes) they
  # sum to the row count, so the mean loss is exactly log 2, whatever q. Swapped, the few
  # positives would carry the negatives' weight and the mean would move far from it.
  # Measured below the calibration, which would repair a wrong weighting before any metric.
  trainer, data, state = _trainer(strategy_name, learning_rate=1e-12, steps_per_loop=5,
                                  positive_fraction=positive_fraction)
  rows = int(sum(data.class_counts()))
  assert rows % 128 == 0  # One pass is whole batches (the stream drops a pass's remainder).
  for v in state.model.trainable_variables:
    v.assign(tf.zeros_like(v))  # Every logit 0.
  train, _ = trainer.train(rows // 128)
  assert train["tp"] + train["fp"] + train["tn"] + train["fn"] == rows
  assert train["loss"] == pytest.approx(np.log(2.0), rel=1e-4)


@pytest.mark.parametrize("positive_fraction", [None, 0.1, 0.04])
def test_the_training_stream_draws_the_configured_positive_share(positive_fraction):
  # What the trainer's stream holds, from the config as the run builds it (None: the default).
  config = Config(strategy="oversample", ensemble=2, **(
      {} if positive_fraction is None else {"positive_fraction": positive_fraction}))
  data = InMemoryData(preprocessing.split_and_encode(small_frame(3000, 90, seed=4), config))
  q = strategies.positive_share(data.class_counts(), config.positive_fraction)
  iterator = train_iterator(data, tf.distribute.get_strategy(), config=config,
                            members=config.ensemble)
  draws = 1500
  labels = np.stack([next(iterator)[1].numpy() for _ in range(draws)])
  assert labels.shape == (draws, config.ensemble * config.batch_size)
  # Each member's batch is batch_size / oversample_chunk chunks, each positive with
  # probability q; the members share the draws (input_pipeline/datasets.py), so the element's
  # share has the spread of one member's.
  chunks = config.batch_size // config.oversample_chunk
  sd = np.sqrt(q * (1 - q) / chunks)
  assert abs(labels.mean() - q) < 4 * sd / np.sqrt(draws)
