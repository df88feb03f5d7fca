"""A short run on the real credit-card set, where the workplace provides it."""

import os

from tests.conftest import read_json, real_data_path, run_main


def test_short_run_of_the_default_command_on_the_real_data(tmp_path):
  data = real_data_path()
  model_dir = str(tmp_path / "real")
  # The README's command (its default model family, tabm), cut to three epochs.
  proc = run_main(f"--data_path={data}", f"--model_dir={model_dir}", "--strategy=oversample",
                  "--epochs=3", timeout=600, model=None)
  assert proc.returncode == 0, proc.stderr
  results = read_json(os.path.join(model_dir, "results.json"))
  counts = results["data"]
  assert sum(c["rows"] for c in counts.values()) == 284_807
  assert sum(c["positives"] for c in counts.values()) == 492
  assert counts["test"] == {"rows": 56_961, "positives": 98}
  assert results["steps"] == 300  # 3 epochs of tabm's 100 steps
  config = read_json(os.path.join(model_dir, "config.json"))
  assert (config["model"], config["ensemble"], config["batch_size"]) == ("tabm", 8, 2048)
  # Three short epochs already rank frauds far above chance (AP 0.0017) on the held-out test
  # split. The probabilities are calibrated to the real fraud rate, so 0.5 is a strict cut:
  # recall is judged where a fraud team would look, at a 1% false-positive rate.
  assert results["test"]["auc"] > 0.95
  assert results["test"]["prc"] > 0.6
  assert results["test"]["recall_at_fpr"]["0.01"] > 0.8
