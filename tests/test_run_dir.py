import os
import signal
import subprocess
import sys
import time

import pytest

from engine import run_dir
from engine.config import Config, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lock_is_exclusive_and_released(tmp_path):
  first = run_dir.RunLock(str(tmp_path)).acquire()
  with pytest.raises(ConfigError, match=r"in use by a running job \(pid \d+"):
    run_dir.RunLock(str(tmp_path)).acquire()
  first.release()
  # Kept, empty: deleting it on release would let two runs lock two different files.
  assert (tmp_path / ".lock").read_text() == ""
  with run_dir.RunLock(str(tmp_path)):
    pass


_RACER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from engine import run_dir
from engine.config import ConfigError
model_dir, marker, cycles = sys.argv[2], sys.argv[3], int(sys.argv[4])
held = 0
while held < cycles:
  try:
    lock = run_dir.RunLock(model_dir).acquire()
  except ConfigError:
    continue
  try:
    # Alone in the critical section, or two runs hold "the" lock.
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    print("two holders at once", flush=True)
    sys.exit(1)
  os.close(fd)
  time.sleep(0.0005)
  os.remove(marker)
  lock.release()
  held += 1
"""


def test_lock_is_never_held_twice_under_contention(tmp_path):
  model_dir = str(tmp_path / "run")
  marker = str(tmp_path / "holder")
  procs = [subprocess.Popen([sys.executable, "-c", _RACER, ROOT, model_dir, marker, "200"],
                            stdout=subprocess.PIPE, text=True) for _ in range(3)]
  try:
    outputs = [p.communicate(timeout=120)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert [p.returncode for p in procs] == [0, 0, 0], outputs

def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  code = ("import sys, time; sys.path.insert(0, %r); from engine import run_dir; "
          "run_dir.RunLock(%r).acquire(); print('locked', flush=True); time.sleep(60)"
          % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), str(tmp_path)))
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError):
      run_dir.RunLock(str(tmp_path)).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
  finally:
    proc.kill()
  assert os.path.exists(tmp_path / ".lock")  # the file is left behind...
  run_dir.RunLock(str(tmp_path)).acquire().release()  # ...but not the lock.


def test_check_writable(tmp_path):
  run_dir.check_writable(str(tmp_path / "new" / "deeper"))  # creatable
  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match="is a file"):
    run_dir.check_writable(str(tmp_path / "file" / "run"))
  with pytest.raises(ConfigError, match="not writable"):
    run_dir.check_writable("/proc/imbalanced-engine-run")
  assert sorted(os.listdir(tmp_path)) == ["file"]  # probing left nothing behind


def _owned_run(tmp_path, config, features=("a", "b")):
  run_dir.write_atomic(str(tmp_path / run_dir.CONFIG_FILE), config.to_json())
  run_dir.write_json(str(tmp_path / run_dir.PREPROCESSING_FILE),
                     {"feature_names": list(features)})


@pytest.mark.parametrize("change,message", [
    (dict(strategy="baseline"), "strategy='oversample'"),
    (dict(hidden_units=(32,)), "hidden_units=[64]"),
    (dict(ensemble=4), "ensemble=1"),
    (dict(label_column="y"), "label_column='Class'"),
    # Its default changed: a run begun with the old one must not resume with the new one.
    (dict(positive_fraction=0.05), "positive_fraction=None, not 0.05"),
    (dict(split="time", time_column="t"), "time_column=None, not 't'"),
])
def test_incompatible_runs_are_refused_unless_fresh(tmp_path, change, message):
  _owned_run(tmp_path, Config())
  with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
    run_dir.check_compatible(str(tmp_path), Config(**change), ["a", "b"])
  assert run_dir.check_compatible(str(tmp_path), Config(fresh=True, **change), ["a", "b"]) is False


@pytest.mark.parametrize("old,new,refused", [
    ("val_prc", "val_loss", True),
    ("val_loss", "val_auc", True),
    ("val_prc", "val_prc", False),
    # Older names of the same metric.
    ("val_prc_exact", "val_prc", False),
    ("val_auc", "val_auc_exact", False),
])
def test_resuming_with_another_monitor_is_refused(tmp_path, old, new, refused):
  _owned_run(tmp_path, Config(monitor=old))
  if refused:
    with pytest.raises(ConfigError, match=f"early-stops on monitor='{old}', not '{new}'"):
      run_dir.check_compatible(str(tmp_path), Config(monitor=new), ["a", "b"])
    assert run_dir.check_compatible(str(tmp_path), Config(monitor=new, fresh=True),
                                    ["a", "b"]) is False
  else:
    assert run_dir.check_compatible(str(tmp_path), Config(monitor=new), ["a", "b"])


def test_a_run_recorded_before_the_monitor_was_kept_ran_with_its_default(tmp_path):
  _owned_run(tmp_path, Config())
  old = read_config(tmp_path)
  del old["monitor"]
  run_dir.write_json(str(tmp_path / run_dir.CONFIG_FILE), old)
  assert run_dir.check_compatible(str(tmp_path), Config(), ["a", "b"])
  with pytest.raises(ConfigError, match="monitor='val_prc', not 'val_loss'"):
    run_dir.check_compatible(str(tmp_path), Config(monitor="val_loss"), ["a", "b"])


def read_config(path) -> dict:
  import json
  with open(path / run_dir.CONFIG_FILE) as f:
    return json.load(f)


def test_compatible_changes_resume(tmp_path):
  _owned_run(tmp_path, Config())
  assert run_dir.check_compatible(str(tmp_path), Config(epochs=7, patience=3), ["a", "b"])
  with pytest.raises(ConfigError, match="other features"):
    run_dir.check_compatible(str(tmp_path), Config(), ["a", "c"])
  assert run_dir.check_compatible(str(tmp_path / "empty"), Config(), ["a"]) is False


def test_write_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
  path = tmp_path / "results.json"
  run_dir.write_atomic(str(path), "good")

  def broken_replace(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", broken_replace)
  with pytest.raises(OSError):
    run_dir.write_atomic(str(path), "half")
  assert path.read_text() == "good"
  assert os.listdir(tmp_path) == ["results.json"]


def test_clear_removes_only_what_a_run_owns(tmp_path):
  for name in ("config.json", "results.json", "notes.txt"):
    (tmp_path / name).write_text("x")
  (tmp_path / "checkpoints").mkdir()
  run_dir.clear(str(tmp_path))
  assert os.listdir(tmp_path) == ["notes.txt"]
