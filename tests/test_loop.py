"""The outer loop's steps, in-process: preflight, end of an epoch, the final report."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine import calibration, evaluation, loop, report
from engine.config import Config
from input_pipeline import preprocessing
from input_pipeline.data import InMemoryData
from input_pipeline.errors import DataError
from tests.builders import logits
from tests.conftest import read_json, small_frame

CONFIG = Config(strategy="baseline", batch_size=128, learning_rate=1e-2, dropout=0.0,
                steps_per_epoch=10, epochs=3, patience=2)


def _run(tmp_path, config=CONFIG, data=None):
  data = data or InMemoryData(preprocessing.split_and_encode(small_frame(3000, 90, seed=4), config))
  strategy = tf.distribute.get_strategy()
  model_dir = str(tmp_path / "run")
  data, resuming = loop.preflight(config, model_dir, strategy, lambda: data)
  os.makedirs(model_dir)
  return loop.start(config, model_dir, data=data, strategy=strategy, distribution="default",
                    resuming=resuming, initial_weights=None)


def _metrics(prc: float) -> dict:
  return {"loss": 0.1, "auc": 0.9, "prc": prc, "prc_exact": prc, "auc_exact": 0.9,
          "precision": 0.5, "recall": 0.5}


def test_early_stopping_follows_the_validation_metric_not_the_training_one(tmp_path):
  run = _run(tmp_path)
  assert loop.end_epoch(run, 1, train=_metrics(0.99), validation=_metrics(0.20))
  assert float(run.state.early_stopping.best_value.numpy()) == pytest.approx(0.20)
  # Training improves, validation does not: no new best.
  assert not loop.end_epoch(run, 2, train=_metrics(0.999), validation=_metrics(0.10))
  assert int(run.state.early_stopping.best_epoch.numpy()) == 1
  assert int(run.state.epoch.numpy()) == 2


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_a_run_whose_monitor_never_improved_reports_its_last_weights(tmp_path, caplog, ema):
  run = _run(tmp_path, CONFIG.replace(ema_momentum=ema))
  initial = [w.copy() for w in run.state.evaluated_model.get_weights()]
  run.trainer.train(30)
  nan = _metrics(float("nan"))
  for epoch in (1, 2):
    loop.end_epoch(run, epoch, train=nan, validation=nan)
  with caplog.at_level(logging.WARNING):
    results, scored = report.final_report(run)
  assert results["weights"]["which"] == "last" and "val_prc" in results["weights"]["why"]
  assert "no epoch improved val_prc" in caplog.text
  trained = run.state.evaluated_model.get_weights()
  assert not np.array_equal(trained[0], initial[0])  # not the initial weights
  # What it reports is the trained model's own scores.
  y, p = scored["test"]
  x_test = run.data.splits.x_test
  np.testing.assert_allclose(
      p, calibration.apply(evaluation.probabilities(logits(run.state.evaluated_model, x_test)),
                           run.calibration), atol=1e-6)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_an_improving_run_reports_its_best_epoch(tmp_path, ema):
  # With a moving average of the weights, the average is what is kept as the best, reported
  # and exported.
  run = _run(tmp_path, CONFIG.replace(ema_momentum=ema))
  run.trainer.train(10)
  loop.end_epoch(run, 1, train=_metrics(0.5), validation=_metrics(0.5))
  best = [w.copy() for w in run.state.evaluated_model.get_weights()]
  run.trainer.train(30)
  loop.end_epoch(run, 2, train=_metrics(0.6), validation=_metrics(0.4))
  results, scored = report.final_report(run)
  assert results["weights"] == {"which": "best", "epoch": 1}
  assert all(np.array_equal(a, b) for a, b in zip(best, run.state.evaluated_model.get_weights()))
  x_test = run.data.splits.x_test
  best_model = run.trainer.host  # The model the export writes.
  best_model.set_weights(best)
  # Calibrated by the fit on the best weights' validation scores, kept for the test split and
  # the export.
  val_scores = evaluation.probabilities(logits(best_model, run.data.splits.x_val))
  assert run.calibration == calibration.fit(scored["validation"][0], val_scores)
  assert results["calibration"]["scale"] == run.calibration.scale
  np.testing.assert_allclose(scored["validation"][1], calibration.apply(
      val_scores, run.calibration), atol=1e-6)
  # The figures a fit flatters are cross-fitted, and results.json says which; the ranking ones
  # are the whole fit's.
  labels = scored["validation"][0]
  held_out = evaluation.exact_metrics(
      labels, calibration.cross_fitted(labels, val_scores, run.calibration))
  in_sample = evaluation.exact_metrics(labels, scored["validation"][1])
  assert results["validation_cross_fitted"] == {"folds": 2,
                                                "metrics": list(calibration.CROSS_FITTED)}
  for name in ("loss", "brier", "tp", "fp"):
    assert results["validation"][name] == pytest.approx(held_out[name], rel=1e-6), name
  assert results["validation"]["loss"] > in_sample["loss"]  # In sample, the fit flatters.
  assert results["validation"]["prc"] == pytest.approx(in_sample["prc"], abs=1e-9)
  np.testing.assert_allclose(scored["test"][1], calibration.apply(
      evaluation.probabilities(logits(best_model, x_test)), run.calibration), atol=1e-6)


def test_each_ensemble_member_keeps_reports_and_exports_its_own_best_epoch(tmp_path, capsys):
  # Member k is best (by its own validation PR-AUC) at epoch k + 1; the ensemble's monitor at
  # epoch 1. The exported weights must be each member's own best, and the validation metrics
  # those of exactly that combination.
  run = _run(tmp_path, CONFIG.replace(ensemble=3))
  snapshots = []
  for epoch, ensemble_prc in ((1, 0.5), (2, 0.4), (3, 0.3)):
    run.trainer.train(10)
    snapshots.append([w.copy() for w in run.state.evaluated_model.get_weights()])
    members = [{"auc": 0.9, "prc": 0.5 if k == epoch - 1 else 0.1} for k in range(3)]
    loop.end_epoch(run, epoch, train=_metrics(0.5), validation=_metrics(ensemble_prc),
                   members=members)
  results, scored = report.final_report(run)
  assert results["best_epoch"] == 1  # The monitor's, which early stopping counts from.
  assert results["weights"] == {"which": "best", "epochs": [1, 2, 3]}
  assert [m["best_epoch"] for m in results["members"]] == [1, 2, 3]
  # Every variable is stacked by member: member k's slice is its own best epoch's.
  expected = [np.stack([snapshots[k][i][k] for k in range(3)]) for i in range(len(snapshots[0]))]
  for got, want in zip(run.state.evaluated_model.get_weights(), expected):
    np.testing.assert_array_equal(got, want)
  host = run.trainer.host  # The model the export writes.
  host.set_weights(expected)
  raw = evaluation.probabilities(logits(host, run.data.splits.x_val))
  assert run.calibration == calibration.fit(scored["validation"][0], raw)
  np.testing.assert_allclose(scored["validation"][1], calibration.apply(raw, run.calibration),
                             atol=1e-6)
  assert results["validation"]["prc"] == pytest.approx(evaluation.roc_auc_and_average_precision(
      scored["validation"][0], raw)[1], abs=1e-9)
  report.publish(run, results, scored)
  assert "Metrics of the members' own best epochs (1, 2, 3)" in capsys.readouterr().out
  assert read_json(os.path.join(run.model_dir, "results.json"))["weights"]["epochs"] == [1, 2, 3]
  best = _scalars(os.path.join(run.model_dir, "logs", "validation_best"))
  assert {k: best[f"member_{k}/best_epoch"] for k in range(3)} == {0: {1: 1}, 1: {1: 2}, 2: {1: 3}}
  assert best["prc"] == {1: pytest.approx(results["validation"]["prc"], abs=1e-6)}


def _overlapping_frame(rows: int, positives: int, seed: int):
  """small_frame with the classes overlapping (a shift of 1 sd, not 3): scores in between 0 and
  1, where the prior correction shows in the mean probability."""
  frame = small_frame(rows, positives, seed)
  columns = ["V1", "V2", "V3"]
  values = frame[columns].to_numpy().copy()
  values[frame["Class"].to_numpy() == 1] -= 2.0
  frame[columns] = values
  return frame


@pytest.mark.parametrize("strategy_name,positive_fraction", [
    ("baseline", 0.5), ("class_weight", 0.5), ("class_weight", 0.05), ("oversample", 0.5),
    ("oversample", 0.1)])
def test_with_the_prior_correction_alone_the_mean_probability_is_the_base_rate(
    tmp_path, strategy_name, positive_fraction):
  # The prior correction undoes the shift of the positive share the model trained on: with
  # --calibration=prior (no fit on validation to repair it) a model that fits its training
  # distribution scores validation with a mean probability equal to the base rate. Tolerance:
  # the ratio was 0.89-1.13 over seeds 0-2 (the generalisation gap of 1,000 steps on 1,800
  # frauds; the stratified split gives validation the training base rate). Without the shift
  # it is 1.9-2.7x (share 0.1), ~9x (0.5) or ~0.6x (class weights at 0.05), and further
  # with the shift's sign reversed: +-25% tells them apart.
  config = Config(strategy=strategy_name, positive_fraction=positive_fraction,
                  calibration="prior", batch_size=256, learning_rate=1e-3, dropout=0.0,
                  hidden_units=(16,), steps_per_loop=100, ema_momentum=0.99, seed=0)
  data = InMemoryData(preprocessing.split_and_encode(_overlapping_frame(60_000, 1_800, seed=4), config))
  run = _run(tmp_path, config, data)
  run.trainer.train(1000)
  validation = report.validate(run)
  assert run.calibration == calibration.IDENTITY
  negatives, positives = data.class_counts()
  base_rate = positives / (negatives + positives)
  assert validation.labels.mean() == pytest.approx(base_rate, rel=0.02)
  assert validation.probabilities.mean() / base_rate == pytest.approx(1.0, abs=0.25)


def test_colliding_serving_names_are_refused_before_anything_is_written(tmp_path):
  frame = small_frame(3000, 90).rename(columns={"V1": "amount usd", "V2": "amount_usd"})
  csv = tmp_path / "collide.csv"
  frame.to_csv(csv, index=False)
  model_dir = tmp_path / "run"
  with pytest.raises(DataError, match="'amount usd' and 'amount_usd' both become"):
    loop.train_and_evaluate(CONFIG.replace(data_path=str(csv)), str(model_dir))
  assert not model_dir.exists()


def _scalars(log_dir: str) -> dict[str, dict[int, float]]:
  acc = EventAccumulator(log_dir, size_guidance={"tensors": 0})
  acc.Reload()
  # Scalars only (DT_FLOAT, rank 0): not the PR curve.
  return {tag: {e.step: float(e.tensor_proto.float_val[0]) for e in acc.Tensors(tag)}
          for tag in acc.Tags()["tensors"]
          if all(e.tensor_proto.dtype == 1 and not e.tensor_proto.tensor_shape.dim
                 for e in acc.Tensors(tag))}


def test_recall_at_fpr_reaches_results_json_and_tensorboard(tmp_path):
  config = CONFIG.replace(epochs=2)
  data = InMemoryData(preprocessing.split_and_encode(small_frame(3000, 90, seed=4), config))
  model_dir = str(tmp_path / "run")
  loop.train_and_evaluate(config, model_dir, data=data)
  results = read_json(os.path.join(model_dir, "results.json"))
  for split in ("validation", "test"):
    at_fpr = results[split]["recall_at_fpr"]
    assert set(at_fpr) == {"0.01", "0.001"}
    assert all(0.0 <= r <= 1.0 for r in at_fpr.values()), at_fpr
    assert at_fpr["0.001"] <= at_fpr["0.01"]
  best = results["best_epoch"]
  validation = _scalars(os.path.join(model_dir, "logs", "validation"))
  assert set(validation["recall_at_fpr_0.01"]) == {1, 2}  # every epoch
  assert set(validation["recall_at_fpr_0.001"]) == {1, 2}
  # The best epoch's value, as results.json and the other runs hold it.
  assert validation["recall_at_fpr_0.01"][best] == pytest.approx(
      results["validation"]["recall_at_fpr"]["0.01"], abs=1e-6)
  for run, split in (("validation_best", "validation"), ("test", "test")):
    tags = _scalars(os.path.join(model_dir, "logs", run))
    for rate in ("0.01", "0.001"):
      assert tags[f"recall_at_fpr_{rate}"] == {best: pytest.approx(
          results[split]["recall_at_fpr"][rate], abs=1e-6)}


def test_with_the_prior_correction_alone_nothing_is_cross_fitted(tmp_path):
  run = _run(tmp_path, CONFIG.replace(calibration="prior"))
  run.trainer.train(10)
  loop.end_epoch(run, 1, train=_metrics(0.5), validation=_metrics(0.5))
  results, scored = report.final_report(run)
  assert results["validation_cross_fitted"] is None and run.calibration == calibration.IDENTITY
  prior = evaluation.probabilities(logits(run.state.evaluated_model, run.data.splits.x_val))
  np.testing.assert_array_equal(scored["validation"][1], prior)
  assert results["validation"]["loss"] == evaluation.exact_metrics(
      scored["validation"][0], prior)["loss"]


def test_an_ensemble_member_that_never_improved_keeps_its_last_weights_and_says_so(tmp_path):
  run = _run(tmp_path, CONFIG.replace(ensemble=2))
  for epoch in (1, 2):
    run.trainer.train(10)
    last = [w.copy() for w in run.state.evaluated_model.get_weights()]
    members = [{"auc": 0.9, "prc": 0.5 if epoch == 1 else 0.1}, {"auc": 0.9, "prc": float("nan")}]
    loop.end_epoch(run, epoch, train=_metrics(0.5), validation=_metrics(0.5), members=members)
  results, _ = report.final_report(run)
  weights = results["weights"]
  assert weights["epochs"] == [1, 2] and weights["last"] == [1] and "members 1 never" in weights["why"]
  assert [m["best_epoch"] for m in results["members"]] == [1, 2]
  for got, want in zip(run.state.evaluated_model.get_weights(), last):
    np.testing.assert_array_equal(got[1], want[1])  # member 1: its last weights
