"""Kills, SIGTERM and numerical faults against the real entry point, in subprocesses."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TEST_MODEL, read_json, run_main

FLAGS = ("--dataset=synthetic", "--synthetic_rows=20000", "--batch_size=256",
         "--steps_per_epoch=10", "--epochs=12", "--patience=100", "--eval_batch_size=1024",
         "--steps_per_loop=5", "--deterministic", "--checkpoint_interval_seconds=0")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("reference"))
  proc = run_main(*FLAGS, f"--model_dir={model_dir}")
  assert proc.returncode == 0, proc.stderr
  return read_json(os.path.join(model_dir, "results.json"))


def _start(model_dir, flags=FLAGS):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  # SIGINT as in a terminal's foreground job: a shell's background job (this test's, maybe)
  # hands its children an ignored SIGINT, which the engine rightly leaves ignored.
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), f"--model={TEST_MODEL}",
                           *flags,
                           f"--model_dir={model_dir}"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_epoch(proc, epoch, timeout=240):
  deadline = time.time() + timeout
  seen = []
  while time.time() < deadline:
    line = proc.stdout.readline()
    if not line:
      break
    seen.append(line)
    if f"epoch {epoch:3d}  train" in line:
      return seen
  proc.kill()
  raise AssertionError("epoch %d never logged:\n%s" % (epoch, "".join(seen[-20:])))


def _same_test_metrics(a, b):
  for key in ("loss", "auc", "prc", "tp", "fp", "tn", "fn"):
    assert a["test"][key] == pytest.approx(b["test"][key], abs=1e-6), key


def test_sigkill_at_random_points_then_resume_ends_like_an_uninterrupted_run(reference, tmp_path):
  rng = random.Random(os.environ.get("KILL_SEED", "0"))
  model_dir = str(tmp_path / "killed")
  killed_at = []
  for _ in range(2):
    proc = _start(model_dir)
    try:
      epoch = rng.randint(1, 4)
      _wait_for_epoch(proc, epoch + (len(killed_at) and killed_at[-1]))
      time.sleep(rng.uniform(0.0, 0.4))  # somewhere inside the next epoch, or its checkpoint
      proc.send_signal(signal.SIGKILL)
      proc.wait(30)
      killed_at.append(epoch + (killed_at[-1] if killed_at else 0))
    finally:
      proc.kill()
  final = run_main(*FLAGS, f"--model_dir={model_dir}")
  assert final.returncode == 0, final.stderr
  assert "Resumed from" in final.stdout
  resumed = read_json(os.path.join(model_dir, "results.json"))
  assert resumed["steps"] == reference["steps"] == 120
  _same_test_metrics(resumed, reference)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_saves_exits_zero_and_resumes(reference, tmp_path, signum):
  # SIGINT is Ctrl-C: the same graceful stop as a scheduler's SIGTERM, not a traceback.
  model_dir = str(tmp_path / "terminated")
  proc = _start(model_dir)
  try:
    _wait_for_epoch(proc, 2)
    proc.send_signal(signum)
    t0 = time.time()
    out, err = proc.communicate(timeout=30)
    took = time.time() - t0
  finally:
    proc.kill()
  assert proc.returncode == 0, err
  assert took < 10
  assert f"Stopped by {signal.Signals(signum).name} at step" in out
  assert "Traceback" not in out + err
  final = run_main(*FLAGS, f"--model_dir={model_dir}")
  assert final.returncode == 0, final.stderr
  assert "Resumed from" in final.stdout
  _same_test_metrics(read_json(os.path.join(model_dir, "results.json")), reference)


def _digest(directory):
  out = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), "rb") as f:
      out[name] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_nan_loss_stops_with_the_step_range_and_keeps_the_best(tmp_path):
  model_dir = str(tmp_path / "nan")
  base = [f for f in FLAGS if not f.startswith("--epochs")]
  assert run_main(*base, "--epochs=2", f"--model_dir={model_dir}").returncode == 0
  best = _digest(os.path.join(model_dir, "best"))
  # Resume the same run with an absurd learning rate: the loss overflows in epoch 3.
  proc = run_main(*base, "--epochs=4", "--learning_rate=1e38", f"--model_dir={model_dir}")
  assert proc.returncode == 3
  assert proc.stderr.count("\n") == 1, proc.stderr
  assert "in epoch 3 (steps 21-30)" in proc.stderr
  assert _digest(os.path.join(model_dir, "best")) == best
  assert not any(n.startswith("ckpt-30") for n in os.listdir(os.path.join(model_dir, "checkpoints")))


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
  model_dir = str(tmp_path / "busy")
  proc = _start(model_dir, [f for f in FLAGS if not f.startswith("--epochs")] + ["--epochs=10000"])
  try:
    _wait_for_epoch(proc, 1)
    second = run_main(*FLAGS, f"--model_dir={model_dir}")
    assert second.returncode == 2
    assert "is in use by a running job (pid %d" % proc.pid in second.stderr
  finally:
    proc.kill()
    proc.wait(30)
