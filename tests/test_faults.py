"""A full disk while a run writes: one line naming the path and the cause, and a run that resumes.

The model directory is a small tmpfs, mounted for the test (root only: skipped elsewhere).
"""

import os
import subprocess

import pytest

from tests.conftest import read_json, run_main

FLAGS = ("--dataset=synthetic", "--synthetic_rows=20000", "--batch_size=256",
         "--steps_per_epoch=5", "--epochs=8", "--patience=100", "--eval_batch_size=1024",
         "--hidden_units=64,64", "--checkpoint_interval_seconds=0")


@pytest.fixture
def small_disk(tmp_path):
  mount = tmp_path / "disk"
  mount.mkdir()
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=240k", "tmpfs", str(mount)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(small_disk):
  model_dir = small_disk / "run"
  proc = run_main(*FLAGS, f"--model_dir={model_dir}")
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-3000:]
  assert "cannot write a checkpoint to" in lines[0] and str(model_dir) in lines[0]
  assert "No space left on device" in lines[0]
  saved = [n for n in os.listdir(model_dir / "checkpoints") if n.endswith(".index")]
  assert saved  # an earlier checkpoint was written before the disk filled
  # More room: the same command resumes from the last checkpoint that was written whole.
  subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
  again = run_main(*FLAGS, f"--model_dir={model_dir}")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Resumed from" in again.stdout
  assert read_json(os.path.join(model_dir, "results.json"))["steps"] == 40
