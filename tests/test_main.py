"""End-to-end: the real entry point, in fresh processes, shrunk from the production config."""

import os
import re

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import read_json, run_main

TINY = ("--dataset=synthetic", "--synthetic_rows=20000", "--batch_size=256",
        "--steps_per_epoch=5", "--eval_batch_size=1024")
# `auc` and `prc` are exact wherever they appear; Keras' estimates are `*_streaming`.
METRICS = {"loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "auc", "prc"}
TRAIN_METRICS = {"loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall",
                 "auc_streaming", "prc_streaming"}
STREAMING = {"auc_streaming", "prc_streaming"}
EPOCH_LINE = re.compile(r"epoch +(\d+)  train loss ")


def tf_array(proto):
  return np.frombuffer(proto.tensor_content, np.float32).reshape(
      [d.size for d in proto.tensor_shape.dim])


def _tags(log_dir):
  acc = EventAccumulator(log_dir, size_guidance={"tensors": 0})
  acc.Reload()
  return set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("run"))
  proc = run_main(*TINY, "--epochs=3", f"--model_dir={model_dir}", "--deterministic")
  assert proc.returncode == 0, proc.stderr
  return model_dir, proc


def test_end_to_end_writes_results_checkpoints_and_logs(tiny_run):
  model_dir, proc = tiny_run
  results = read_json(os.path.join(model_dir, "results.json"))
  assert results["strategy"] == "oversample"
  assert results["distribution"] == "default" and results["num_replicas"] == 1
  assert results["epochs_run"] == 3 and results["steps"] == 15
  assert 1 <= results["best_epoch"] <= 3
  assert results["train_seconds"] > 0
  # Calibrated on validation by default; the export applies the same fit.
  assert results["calibration"]["method"] == "platt" and results["calibration"]["scale"] > 0
  serving = read_json(os.path.join(model_dir, "export", "assets.extra", "serving.json"))
  assert serving["calibration"] == results["calibration"]
  assert METRICS <= set(results["test"])
  assert {"auc_streaming", "prc_streaming"} <= set(results["test"])
  test = results["test"]
  assert test["tp"] + test["fn"] == results["data"]["test"]["positives"]
  assert test["tp"] + test["fp"] + test["tn"] + test["fn"] == results["data"]["test"]["rows"]
  files = set(os.listdir(os.path.join(model_dir, "checkpoints")))
  # Checkpoints are numbered by global step. This run is shorter than the default 30 s
  # between checkpoints: only the final state is written, and the best weights with it.
  assert {f for f in files if f.endswith(".index")} == {"ckpt-15.index"}
  assert any(f.startswith("ckpt-15.data") for f in files)
  best_step = results["best_epoch"] * 5
  assert {f for f in os.listdir(os.path.join(model_dir, "best")) if f.endswith(".index")} == {
      f"ckpt-{best_step}.index"}
  for name in ("config.json", "preprocessing.json"):
    assert os.path.exists(os.path.join(model_dir, name))
  train_tags = _tags(os.path.join(model_dir, "logs", "train"))
  val_tags = _tags(os.path.join(model_dir, "logs", "validation"))
  assert TRAIN_METRICS | {"examples_per_second"} == train_tags - {"config"}  # config: Text
  assert METRICS | STREAMING | {"brier", "recall_at_fpr_0.01", "recall_at_fpr_0.001"} == \
      val_tags - {"pr_curve/pr_curves"}
  assert METRICS | STREAMING | {"brier"} <= _tags(os.path.join(model_dir, "logs", "test"))
  # The oversampled model's PR curve, from its exact scores, spans recall from <= 0.1 to 1, and
  # resolves the first fraud caught (1 of 7 test positives here).
  acc = EventAccumulator(os.path.join(model_dir, "logs", "test"), size_guidance={"tensors": 0})
  acc.Reload()
  (curve,) = acc.Tensors("pr_curve/pr_curves")
  recall = tf_array(curve.tensor_proto)[5]
  positives = results["data"]["test"]["positives"]
  assert recall.min() <= 0.1 and recall.max() == 1.0
  assert np.isclose(recall, 1 / positives).any()
  # One log line per epoch, on stdout; stderr stays empty on success.
  assert sum(bool(EPOCH_LINE.search(line)) for line in proc.stdout.splitlines()) == 3
  assert proc.stderr.strip() == ""


def test_the_console_fits_a_terminal_and_says_where_to_look_next(tiny_run):
  model_dir, proc = tiny_run
  lines = proc.stdout.splitlines()
  assert max(len(line) for line in lines) <= 120, max(lines, key=len)
  # The config is in config.json and TensorBoard, not on screen (-v 1 brings it back).
  assert "Config:" not in proc.stdout and '"learning_rate"' not in proc.stdout
  # The results table says which threshold each row is at.
  assert any(line.split()[:2] == ["test", "0.5"] for line in lines)
  assert any(line.startswith("test @t ") for line in lines)
  assert "@t: the threshold chosen on validation for recall >= 0.9." in proc.stdout
  # The closing block: results, export, logs and the TensorBoard command.
  assert lines[-4:] == [f"Results:     {model_dir}/results.json",
                        f"Export:      {model_dir}/export", f"Logs:        {model_dir}/logs",
                        f"TensorBoard: tensorboard --logdir {model_dir}"]


def test_help_exits_0_and_verbose_shows_the_config(tmp_path):
  for flag in ("--help", "--helpfull"):
    proc = run_main(flag)
    assert proc.returncode == 0 and "--strategy" in proc.stdout, proc.stderr
  proc = run_main(*TINY, "--epochs=1", "--strategy=baseline", f"--model_dir={tmp_path}",
                  "-v", "1")
  assert proc.returncode == 0, proc.stderr
  assert "Config:" in proc.stdout and '"strategy": "baseline"' in proc.stdout


def test_rerun_resumes_and_matches_an_uninterrupted_run(tiny_run, tmp_path):
  straight_dir, _ = tiny_run
  model_dir = str(tmp_path / "resumed")
  first = run_main(*TINY, "--epochs=1", f"--model_dir={model_dir}", "--deterministic")
  assert first.returncode == 0, first.stderr
  second = run_main(*TINY, "--epochs=3", f"--model_dir={model_dir}", "--deterministic")
  assert second.returncode == 0, second.stderr
  assert "Resumed from" in second.stdout and "epoch 1, step 5" in second.stdout
  resumed = read_json(os.path.join(model_dir, "results.json"))
  straight = read_json(os.path.join(straight_dir, "results.json"))
  assert resumed["steps"] == 15 and resumed["epochs_run"] == 3
  for key in ("loss", "auc", "prc", "tp", "fp"):
    assert resumed["test"][key] == pytest.approx(straight["test"][key], abs=1e-6), key
  # A finished run started again does no more work.
  third = run_main(*TINY, "--epochs=3", f"--model_dir={model_dir}", "--deterministic")
  assert third.returncode == 0 and not EPOCH_LINE.search(third.stdout)


def test_resuming_with_another_monitor_is_refused_in_one_line(tiny_run):
  # The checkpointed best value is val_prc's: a val_loss of 0.03 would "beat" a PR-AUC of 0.85.
  model_dir, _ = tiny_run
  before = {name: os.path.getmtime(os.path.join(model_dir, name)) for name in os.listdir(model_dir)}
  proc = run_main(*TINY, "--epochs=4", f"--model_dir={model_dir}", "--deterministic",
                  "--monitor=val_loss")
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "monitor='val_prc', not 'val_loss'" in lines[0], proc.stderr
  assert "--monitor=val_prc" in lines[0] and "Traceback" not in proc.stderr
  after = {name: os.path.getmtime(os.path.join(model_dir, name)) for name in os.listdir(model_dir)}
  assert after == before  # Refused before anything is written.


def test_with_xla_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
  # Resume is exact within each mode: the compiled step replays the same masks and stream.
  xla = (*TINY, "--deterministic", "--jit_compile=true")
  straight = run_main(*xla, "--epochs=3", f"--model_dir={tmp_path / 'straight'}")
  assert straight.returncode == 0, straight.stderr[-3000:]
  assert "XLA on" in straight.stdout + straight.stderr
  first = run_main(*xla, "--epochs=1", f"--model_dir={tmp_path / 'resumed'}")
  second = run_main(*xla, "--epochs=3", f"--model_dir={tmp_path / 'resumed'}")
  assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
  assert "Resumed from" in second.stdout
  a = read_json(str(tmp_path / "straight" / "results.json"))
  b = read_json(str(tmp_path / "resumed" / "results.json"))
  for key in ("loss", "auc", "prc", "tp", "fp"):
    assert b["test"][key] == pytest.approx(a["test"][key], abs=1e-6), key


def test_fresh_starts_over(tiny_run, tmp_path):
  model_dir = str(tmp_path / "fresh")
  assert run_main(*TINY, "--epochs=1", f"--model_dir={model_dir}").returncode == 0
  proc = run_main(*TINY, "--epochs=1", f"--model_dir={model_dir}", "--fresh")
  assert proc.returncode == 0 and "Resumed" not in proc.stdout
  assert read_json(os.path.join(model_dir, "results.json"))["steps"] == 5


@pytest.mark.parametrize("xla", ["false", "true"])
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, xla):
  common = ("--dataset=synthetic", "--synthetic_rows=40000", "--batch_size=512",
            "--steps_per_epoch=20", "--epochs=4", "--learning_rate=3e-3", f"--jit_compile={xla}")
  single = run_main(*common, f"--model_dir={tmp_path / 'one'}")
  mirrored = run_main(*common, "--logical_cpus=2", "--distribution=mirrored",
                      f"--model_dir={tmp_path / 'two'}")
  assert single.returncode == 0, single.stderr
  assert mirrored.returncode == 0, mirrored.stderr
  one = read_json(str(tmp_path / "one" / "results.json"))
  two = read_json(str(tmp_path / "two" / "results.json"))
  assert two["num_replicas"] == 2 and two["distribution"] == "mirrored"
  assert one["num_replicas"] == 1
  assert two["steps"] == one["steps"] == 80
  assert two["test"]["auc"] == pytest.approx(one["test"]["auc"], abs=0.01)
  assert one["test"]["auc"] > 0.9  # the runs learned something, so the comparison means something


@pytest.mark.parametrize("flags,message", [
    (("--epochs=0",), "--epochs=0"),
    (("--batch_size=-5",), "--batch_size=-5"),
    (("--learning_rate=0",), "--learning_rate=0"),
    (("--patience=0",), "--patience=0"),
    (("--strategy=smote",), "--strategy"),
    (("--distribution=horovod",), "--distribution"),
    (("--hidden_units=16,x",), "--hidden_units"),
    (("--monitor=val_f1",), "--monitor"),
    (("--calibration=isotonic",), "--calibration"),
    (("--no_such_flag=1",), "no_such_flag"),
    (("positional",), "unexpected argument"),
])
def test_bad_flags_fail_with_one_line(flags, message, tmp_path):
  model_dir = tmp_path / "run"
  proc = run_main(*flags, f"--model_dir={model_dir}", "--dataset=synthetic")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], proc.stderr
  assert "Traceback" not in proc.stderr
  assert not model_dir.exists()


# With a moving average of the weights: it is part of the state a resumed run must restore.
ENSEMBLE = ("--dataset=synthetic", "--synthetic_rows=20000", "--batch_size=256",
            "--steps_per_epoch=10", "--ensemble=3", "--deterministic", "--ema_momentum=0.5",
            # 30 steps of 256 rows: at the default share (0.005) the members see ~40 frauds and
            # rank near chance; the test is about resume and replicas, not about the share.
            "--positive_fraction=0.05")


def test_an_ensemble_resumes_exactly_and_trains_on_two_replicas(tmp_path):
  straight = run_main(*ENSEMBLE, "--epochs=3", f"--model_dir={tmp_path / 'straight'}")
  assert straight.returncode == 0, straight.stderr[-3000:]
  first = run_main(*ENSEMBLE, "--epochs=1", f"--model_dir={tmp_path / 'resumed'}")
  assert first.returncode == 0, first.stderr[-3000:]
  second = run_main(*ENSEMBLE, "--epochs=3", f"--model_dir={tmp_path / 'resumed'}")
  assert second.returncode == 0 and "Resumed from" in second.stdout, second.stderr[-3000:]
  a = read_json(str(tmp_path / "straight" / "results.json"))
  b = read_json(str(tmp_path / "resumed" / "results.json"))
  assert a["ensemble"] == 3 and len(a["members"]) == 3 and a["steps"] == b["steps"] == 30
  for key in ("loss", "auc", "prc", "tp", "fp"):
    assert b["test"][key] == pytest.approx(a["test"][key], abs=1e-6), key
  assert [m["best_epoch"] for m in a["members"]] == [m["best_epoch"] for m in b["members"]]
  mirrored = run_main(*ENSEMBLE, "--epochs=3", "--logical_cpus=2", "--distribution=mirrored",
                      f"--model_dir={tmp_path / 'mirrored'}")
  assert mirrored.returncode == 0, mirrored.stderr[-3000:]
  m = read_json(str(tmp_path / "mirrored" / "results.json"))
  assert (m["num_replicas"], m["ensemble"], m["steps"]) == (2, 3, 30)
  assert m["test"]["auc"] == pytest.approx(a["test"]["auc"], abs=0.02) and m["test"]["auc"] > 0.9
