"""The trainer, driven in-process on a tiny in-memory `Data`: no subprocess, no model directory."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from engine import calibration, evaluation, strategies
from engine import state as train_state
from engine.config import Config
from engine.trainer import Trainer
from input_pipeline import preprocessing
from input_pipeline.data import InMemoryData
from tests.builders import logits
from tests.conftest import small_frame


def _trainer(strategy_name="baseline", **overrides):
  config = Config(**{"strategy": strategy_name, "batch_size": 128, "learning_rate": 1e-2,
                     "dropout": 0.0, "steps_per_loop": 10, **overrides})
  data = InMemoryData(preprocessing.prepare(small_frame(3000, 90, seed=4), config))
  strategy = tf.distribute.get_strategy()
  state = train_state.create(
      config, layout=data.layout(config.seed), strategy=strategy,
      output_bias=strategies.get(config.strategy).initial_bias(data.class_counts(),
                                                               config.positive_fraction))
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
  metrics, labels, probs, members = trainer.evaluate("validation")
  assert len(labels) == len(probs) == data.counts()["validation"]["rows"]
  assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == len(labels)
  # `auc` and `prc` are exact, sklearn's over the same predictions; Keras' 200-threshold
  # estimates have their own names.
  assert metrics["auc"] == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-9)
  assert metrics["prc"] == pytest.approx(skm.average_precision_score(labels, probs), abs=1e-9)
  assert {"auc_streaming", "prc_streaming", "brier"} <= set(metrics)
  assert not {"auc_exact", "prc_exact"} & set(metrics)
  # The probabilities are the trained model's own, and the streaming counts follow them.
  x = data.splits.x_val
  raw = evaluation.probabilities(logits(state.evaluated_model, x))
  # Calibrated by a fit on this very pass (engine/calibration.py), ranking kept.
  assert trainer.calibration == calibration.fit(labels, raw)
  assert trainer.calibration.method == "platt"
  expected = calibration.apply(raw, trainer.calibration)
  assert members == [{"auc": metrics["auc"], "prc": metrics["prc"]}]
  np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)
  assert np.abs(probs - raw).max() > 1e-3  # The calibration moved them, so the test can tell.
  assert metrics["tp"] == int(((probs >= 0.5) & (labels == 1)).sum())
  # Every epoch and the final report get the same names with the same meaning.
  again, _, _, _ = trainer.evaluate("validation")
  assert again == metrics
  fitted = trainer.calibration
  test, test_labels, test_probs, _ = trainer.evaluate("test")
  assert trainer.calibration == fitted  # The test split uses validation's fit.
  np.testing.assert_allclose(test_probs, calibration.apply(evaluation.probabilities(
      logits(state.evaluated_model, data.splits.x_test)), fitted), atol=1e-6)
  assert set(test) == set(metrics)
  assert test["tp"] + test["fn"] == data.counts()["test"]["positives"]


def test_calibration_prior_keeps_the_prior_corrected_scores():
  trainer, data, state = _trainer("oversample", calibration="prior")
  trainer.train(50)
  _, _, probs, _ = trainer.evaluate("validation")
  assert trainer.calibration == calibration.IDENTITY
  np.testing.assert_array_equal(probs, evaluation.probabilities(
      logits(state.evaluated_model, data.splits.x_val), trainer.logit_shift))


def test_with_a_moving_average_the_average_is_scored_not_the_weights():
  trainer, data, state = _trainer(ema_momentum=0.9)
  assert state.evaluated_model is state.average_model
  trainer.train(30)
  _, _, probs, _ = trainer.evaluate("validation")
  x = data.splits.x_val
  average = calibration.apply(evaluation.probabilities(
      logits(state.average_model, x)), trainer.calibration)
  weights = calibration.apply(evaluation.probabilities(
      logits(state.model, x)), trainer.calibration)
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
  metrics, labels, probs, members = trainer.evaluate("validation")
  assert len(members) == 3
  # The ensemble's probability is the mean of its members' probabilities, calibrated.
  member_logits = logits(state.model, data.splits.x_val)
  np.testing.assert_allclose(probs, calibration.apply(
      evaluation.member_probabilities(member_logits).mean(axis=0), trainer.calibration),
      atol=1e-6)
  for k in range(3):
    p_k = evaluation.member_probabilities(member_logits)[k]
    assert members[k]["prc"] == pytest.approx(skm.average_precision_score(labels, p_k),
                                              abs=1e-6)
