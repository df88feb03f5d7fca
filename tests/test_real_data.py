"""A short run on the real credit-card set, where the workplace provides it."""

import os

from tests.conftest import read_json, real_data_path, run_main


def test_short_oversample_run_on_the_real_data(tmp_path):
  data = real_data_path()
  model_dir = str(tmp_path / "real")
  proc = run_main(f"--data_path={data}", f"--model_dir={model_dir}", "--epochs=5",
                  timeout=600)
  assert proc.returncode == 0, proc.stderr
  results = read_json(os.path.join(model_dir, "results.json"))
  counts = results["data"]
  assert sum(c["rows"] for c in counts.values()) == 284_807
  assert sum(c["positives"] for c in counts.values()) == 492
  assert counts["test"] == {"rows": 56_961, "positives": 98}
  assert results["steps"] == 250  # 5 epochs of the default 50 steps
  # Five short epochs already rank frauds far above chance on the held-out test split.
  assert results["test"]["auc"] > 0.95
  assert results["test"]["recall"] > 0.8
