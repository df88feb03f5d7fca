import os

import numpy as np
import pytest
import tensorflow as tf

from engine import calibration, compare, evaluation, export
from engine.config import STRATEGIES, Config
from tests.builders import build_model, logits
from input_pipeline import preprocessing, sources
from tests.conftest import read_json


def test_all_writes_one_run_per_strategy_and_the_comparison(all_run):
  comparison = read_json(os.path.join(all_run, compare.COMPARISON_JSON))
  assert set(comparison) == set(STRATEGIES)
  ranks = sorted(c["rank_on_validation"] for c in comparison.values())
  assert ranks == [1, 2, 3]
  for s, c in comparison.items():
    results = read_json(os.path.join(all_run, s, "results.json"))
    assert results["strategy"] == s and results["epochs_run"] == 2
    for key in ("auc", "prc", "precision", "recall", "fp", "fn"):
      assert c["test"][key] == results["test"][key]
    th = c["threshold"]
    assert th == results["threshold"] and th["target_recall"] == 0.9
    assert 0.0 < th["value"] < 1.0
    # Chosen on validation: there the target is met.
    assert th["validation"]["recall"] >= 0.9
    assert set(th["test"]) >= {"precision", "recall", "fp", "fn", "tp", "tn"}
    assert os.path.exists(os.path.join(all_run, s, "export", "saved_model.pb"))
  table = open(os.path.join(all_run, compare.COMPARISON_MD)).read()
  assert all(f"| {s} |" in table for s in STRATEGIES)
  # It names what ranks the strategies and which epoch's weights it reports.
  assert "Rank 1 has the highest validation precision at its threshold" in table
  assert "best epoch by val_prc" in table
  for s, c in comparison.items():
    assert c["best_epoch"] == read_json(os.path.join(all_run, s, "results.json"))["best_epoch"]
    assert f"| {s} | {c['rank_on_validation']} | {c['best_epoch']} | " in table
    # A threshold that is called out in the run is called out in the table.
    for warning in c["threshold"]["warnings"]:
      assert f"- **{s}**, t = {c['threshold']['value']:.4g}: {warning}" in table
  assert os.path.exists(os.path.join(all_run, compare.INITIAL_WEIGHTS + ".index"))


def test_runs_start_from_the_saved_weights_with_their_own_bias(all_run):
  reader = tf.train.load_checkpoint(os.path.join(all_run, compare.INITIAL_WEIGHTS))
  bias_key = next(k for k in reader.get_variable_to_shape_map()
                  if "logit" in k and "bias" in k)
  # The first strategy (baseline) saved them, with its log(pos/neg) bias.
  assert reader.get_tensor(bias_key)[0] < -3.0
  log = open(os.path.join(os.path.dirname(all_run), "stdout.log")).read()
  # The two later runs load them (and then set their own bias, which the loop logs).
  assert log.count("Starting from the shared initial weights") == 2
  # The oversampled stream's prior is its positive share: bias log(p/(1-p)), with p by default
  # three times the training split's fraud rate.
  import re
  rows, positives = map(int, re.search(r"train +(\d+) rows, +(\d+) positives", log).groups())
  share, bias = map(float, re.search(r"Strategy oversample: positive share ([0-9.e-]+), class "
                                     r"weights \[1.0, 1.0\], bias ([-0-9.]+)",
                                     log).groups())
  assert share == pytest.approx(3 * positives / rows, rel=1e-3)
  assert bias == pytest.approx(np.log(share / (1 - share)), abs=1e-4)
  # One line per epoch with its ETA; no progress bar in a log (stdout is not a terminal).
  assert log.count("  ETA ") == 3 * 2 and "steps, " not in log
  # The closing block names both comparison files and the TensorBoard command.
  assert f"Comparison:  {os.path.join(all_run, 'comparison.md')} (and .json)" in log
  assert f"TensorBoard: tensorboard --logdir {all_run}" in log
  # Readable in a terminal (TensorFlow's expected retracing warnings were ~700 characters),
  # with the model_dir of the Workflow's example instead of this test's long temporary one.
  lines = log.replace(all_run, "runs/all").splitlines()
  assert max(len(line) for line in lines) <= 120, max(lines, key=len)
  assert '"strategy": "oversample"' not in log  # No config dump claiming one strategy.


def test_export_reproduces_the_engine_test_predictions(all_run):
  config = Config(dataset="synthetic", synthetic_rows=20000, seed=0, strategy="class_weight")
  frame, _ = sources.load_frame(config)
  splits = preprocessing.split_and_encode(frame, config)
  _, _, test_rows = preprocessing.stratified_split(
      frame["Class"].to_numpy(),
      validation_fraction=config.validation_fraction, test_fraction=config.test_fraction,
      seed=config.seed)
  run = os.path.join(all_run, config.strategy)
  model = build_model(config, num_features=splits.num_features, output_bias=0.0)
  tf.train.Checkpoint(model=model).restore(
      tf.train.latest_checkpoint(os.path.join(run, "best"))).assert_existing_objects_matched()
  results = read_json(os.path.join(run, "results.json"))
  # class_weight's scores are shifted back to the real prior, then calibrated on validation,
  # in the engine and in the export.
  assert results["logit_shift"] < -1.0
  assert results["calibration"]["method"] == "platt"
  fitted = calibration.Calibration(**results["calibration"])
  assert (fitted.scale, fitted.offset) != (1.0, 0.0)
  engine_probs = calibration.apply(evaluation.predict_probabilities(
      model, splits.x_test, shift=results["logit_shift"]), fitted)
  exported = export.ExportedModel(os.path.join(run, "export"))
  probs, decisions = exported.score(frame.iloc[test_rows])
  np.testing.assert_allclose(probs, engine_probs, rtol=0, atol=1e-5)
  exact = evaluation.exact_metrics(splits.y_test, probs)
  for name in ("prc", "loss", "brier"):
    assert exact[name] == pytest.approx(results["test"][name], rel=1e-5, abs=1e-9), name
  assert exported.threshold == results["threshold"]["value"]
  assert int(decisions.sum()) == results["threshold"]["test"]["tp"] + \
      results["threshold"]["test"]["fp"]


def test_all_validates_every_strategy_before_training(tmp_path):
  with pytest.raises(Exception, match="oversample_chunk"):
    compare.train_all(Config(strategy="baseline", batch_size=100), str(tmp_path / "runs"))
  assert not os.path.exists(tmp_path / "runs")
