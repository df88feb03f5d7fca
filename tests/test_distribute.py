"""Strategy helpers, TPU set-up without a TPU, and two real local workers against one process."""

from __future__ import annotations

from tests.builders import spec
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, TEST_MODEL, read_json, small_frame
from engine import distribute
from engine.config import Config, ConfigError
from input_pipeline import datasets


# ---- TPU: everything but the TPU itself ----------------------------------------------------


def test_tpu_needs_an_address():
  with pytest.raises(ConfigError, match="--distribution=tpu needs --tpu"):
    Config(distribution="tpu")


def test_tpu_strategy_connects_with_the_resolver_in_order(monkeypatch):
  calls = []

  class FakeResolver:
    def __init__(self, tpu):
      calls.append(("resolver", tpu))

  monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                      lambda r: calls.append(("connect", type(r).__name__)))
  monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                      lambda r: calls.append(("initialize", type(r).__name__)))
  monkeypatch.setattr(tf.distribute, "TPUStrategy",
                      lambda r: calls.append(("strategy", type(r).__name__)) or "strategy")
  assert distribute.make_tpu_strategy("grpc://10.0.0.2:8470", FakeResolver) == "strategy"
  assert calls == [("resolver", "grpc://10.0.0.2:8470"), ("connect", "FakeResolver"),
                   ("initialize", "FakeResolver"), ("strategy", "FakeResolver")]


def test_an_unreachable_tpu_is_a_config_error():
  class NoTpu:
    def __init__(self, tpu):
      raise ValueError(f"Could not find TPU {tpu}\nmore detail")

  with pytest.raises(ConfigError, match=r"invalid --tpu='my-tpu': .*Could not find TPU my-tpu\)$"):
    distribute.make_tpu_strategy("my-tpu", NoTpu)


def test_make_strategy_passes_the_tpu_flag(monkeypatch):
  seen = []
  monkeypatch.setattr(distribute, "make_tpu_strategy", lambda tpu: seen.append(tpu) or "s")
  assert distribute.make_strategy(Config(distribution="tpu", tpu="node-1")) == ("s", "tpu")
  assert seen == ["node-1"]


@pytest.mark.parametrize("strategy", ["baseline", "class_weight", "oversample"])
def test_train_datasets_have_static_shapes(strategy):
  # TPUs compile for fixed shapes: no unknown (None) dimension may reach the step.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((500, 7)).astype(np.float32)
  y = (rng.random(500) < 0.1).astype(np.int64)
  train = datasets.train_dataset(x, y, spec(strategy=strategy, batch_size=64, chunk=16, seed=0))
  assert [s.shape.as_list() for s in train.element_spec] == [[64, 7], [64]]


# ---- multi-worker ----------------------------------------------------------------------------


def test_multi_worker_needs_tf_config(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ConfigError, match="TF_CONFIG"):
    distribute.make_strategy(Config(distribution="multi_worker"))


def test_single_process_strategies_are_chief_and_need_no_barrier(tmp_path):
  strategy = tf.distribute.get_strategy()
  assert distribute.is_chief(strategy)
  distribute.barrier(strategy)  # a no-op: it would hang if it waited for other workers
  with distribute.worker_directory(strategy, str(tmp_path / "run")) as d:
    assert d == str(tmp_path / "run")


def _free_ports(n: int) -> list[int]:
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


@contextlib.contextmanager
def _reaped(procs: list):
  """Kills whatever of `procs` ((Popen, file) pairs, filled inside the block) is still running."""
  try:
    yield procs
  finally:
    for p, _ in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def _table_line(stdout: str, name: str) -> str:
  return [line for line in stdout.splitlines() if line.startswith(name + " ")][-1]


def test_two_workers_train_one_model_like_a_single_process(tmp_path):
  # A learnable but not separable task, so the AUC comparison can fail.
  frame = small_frame(rows=4000, positives=200, seed=1)
  frame.loc[frame.Class == 1, ["V1", "V2", "V3"]] -= 2.2
  data = tmp_path / "data.csv"
  frame.to_csv(data, index=False)
  # Every flag that shapes the training is pinned (the positive share too): the AUC tolerance
  # below was set on this task with these weights, and a default's change must not move it.
  flags = [f"--data_path={data}", "--strategy=class_weight", "--epochs=3", "--batch_size=256",
           "--steps_per_epoch=10", "--learning_rate=0.02", "--dropout=0", "--patience=5",
           "--positive_fraction=0.1"]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}

  def start(name, extra, env):
    out = open(tmp_path / f"{name}.out", "w+")
    cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--model={TEST_MODEL}", *flags, *extra]
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, **env}), out

  with _reaped([]) as procs:
    for i in (0, 1):
      (tmp_path / f"tmp{i}").mkdir()
      env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
             "TMPDIR": str(tmp_path / f"tmp{i}")}
      procs.append(start(f"worker{i}", ["--distribution=multi_worker",
                                        f"--model_dir={tmp_path / f'w{i}'}"], env))
    procs.append(start("single", ["--distribution=default", f"--model_dir={tmp_path / 's'}"], {}))
    for p, _ in procs:
      p.wait(timeout=240)
  outputs = []
  for (p, out), name in zip(procs, ("worker0", "worker1", "single")):
    out.seek(0)
    outputs.append(out.read())
    out.close()
    assert p.returncode == 0, f"{name} failed:\n{outputs[-1][-3000:]}"

  chief, single = read_json(tmp_path / "w0" / "results.json"), read_json(tmp_path / "s" / "results.json")
  assert (chief["distribution"], chief["num_replicas"], chief["steps"]) == ("multi_worker", 2, 30)
  assert chief["test"]["auc"] > 0.75  # it learned
  assert abs(chief["test"]["auc"] - single["test"]["auc"]) < 0.01
  # Both workers hold the same weights: their exact test metrics agree to the last digit.
  assert _table_line(outputs[0], "test") == _table_line(outputs[1], "test")
  # Only the chief wrote: worker 1's model_dir was never created, its temp dir was removed.
  assert {"checkpoints", "best", "logs", "results.json"} <= set(os.listdir(tmp_path / "w0"))
  assert os.listdir(tmp_path / "w0" / "logs" / "train")
  assert not (tmp_path / "w1").exists()
  assert "Not the chief: writing to the temporary directory" in outputs[1]
  # Its temporary run directory is gone (TensorFlow's autograph may leave a __pycache__ beside).
  assert not [n for n in os.listdir(tmp_path / "tmp1") if n.startswith("imbalanced-engine-worker-")]


def test_two_workers_train_from_a_prepared_directory(tmp_path):
  # Data larger than memory on several machines: each worker streams its own shards. With XLA
  # on (the in-memory test above runs without): a multi-worker compiled step.
  frame = small_frame(rows=4000, positives=200, seed=2)
  frame.loc[frame.Class == 1, ["V1", "V2", "V3"]] -= 2.2
  data = tmp_path / "data.csv"
  frame.to_csv(data, index=False)
  prepared = tmp_path / "prepared"
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--mode=prepare",
                         f"--data_path={data}", f"--output_dir={prepared}", "--prepare_shards=4"],
                        capture_output=True, text=True, cwd=ROOT, timeout=240)
  assert proc.returncode == 0, proc.stderr
  flags = [f"--prepared_dir={prepared}", "--strategy=oversample", "--epochs=3",
           "--batch_size=256", "--steps_per_epoch=10", "--learning_rate=0.02", "--dropout=0",
           "--patience=5", "--jit_compile=true"]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  with _reaped([]) as procs:
    for i in (0, 1):
      out = open(tmp_path / f"worker{i}.out", "w+")
      env = {**os.environ, "TF_CONFIG": json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})}
      procs.append((subprocess.Popen(
          [sys.executable, os.path.join(ROOT, "main.py"), f"--model={TEST_MODEL}", *flags,
           "--distribution=multi_worker",
           f"--model_dir={tmp_path / f'w{i}'}"], stdout=out, stderr=subprocess.STDOUT,
          cwd=ROOT, env=env), out))
    for p, _ in procs:
      p.wait(timeout=240)
  outputs = []
  for p, out in procs:
    out.seek(0)
    outputs.append(out.read())
    out.close()
    assert p.returncode == 0, outputs[-1][-3000:]
  chief = read_json(tmp_path / "w0" / "results.json")
  assert (chief["distribution"], chief["num_replicas"], chief["steps"]) == ("multi_worker", 2, 30)
  assert chief["test"]["auc"] > 0.75  # it learned
  assert _table_line(outputs[0], "test") == _table_line(outputs[1], "test")
  assert not (tmp_path / "w1").exists()
  assert "XLA on for the training step" in outputs[0]


def test_sigterm_to_one_worker_stops_both_at_the_same_step_and_they_resume(tmp_path):
  import signal
  import time
  data = tmp_path / "data.csv"
  small_frame(rows=4000, positives=200, seed=1).to_csv(data, index=False)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}

  def start(i, epochs):
    out = open(tmp_path / f"worker{i}-{epochs}.out", "w+")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}
    cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--model={TEST_MODEL}",
           f"--data_path={data}",
           "--strategy=class_weight", f"--epochs={epochs}", "--batch_size=256",
           "--steps_per_epoch=10", "--steps_per_loop=2", "--patience=10000",
           "--distribution=multi_worker", f"--model_dir={tmp_path / 'run'}"]
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env), out

  with _reaped([start(0, 10000), start(1, 10000)]) as procs:
    deadline = time.time() + 180
    while "epoch   2  train" not in (tmp_path / "worker0-10000.out").read_text():
      assert time.time() < deadline and procs[0][0].poll() is None, "worker 0 never reached epoch 2"
      time.sleep(0.2)
    procs[1][0].send_signal(signal.SIGTERM)  # only worker 1 is told
    for p, _ in procs:
      p.wait(timeout=60)
  logs = [(tmp_path / f"worker{i}-10000.out").read_text() for i in (0, 1)]
  assert [p.returncode for p, _ in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
  stopped = [[line.split("Stopped by")[1].split(" at step ")[1].split(" ")[0]
              for line in log.splitlines() if "Stopped by" in line] for log in logs]
  assert stopped[0] and stopped[0] == stopped[1]  # both stopped, at the same step
  step = int(stopped[0][0])
  assert f"ckpt-{step}.index" in os.listdir(tmp_path / "run" / "checkpoints")
  # Both start again and finish the run from that step.
  with _reaped([start(0, 4), start(1, 4)]) as procs:
    for p, _ in procs:
      p.wait(timeout=180)
  log = (tmp_path / "worker0-4.out").read_text()
  assert procs[0][0].returncode == 0, log[-3000:]
  assert f"step {step}" in log and "Resumed from" in log
  assert read_json(tmp_path / "run" / "results.json")["steps"] == max(40, step)


@pytest.mark.parametrize("flags,on,why", [
    (dict(), False, "XLA off for the training step and the scoring (--jit_compile=auto on CPU"),
    (dict(jit_compile="true"), True, "XLA on for the training step and the scoring "
                                     "(--jit_compile=true)"),
    (dict(jit_compile="false"), False, "XLA off"),
    (dict(distribution="tpu", tpu="t"), True, "XLA on for the training step and the scoring "
                                              "(--jit_compile=auto on TPU"),
])
def test_the_xla_choice_follows_the_device_type_and_is_logged(flags, on, why, caplog):
  with caplog.at_level(logging.INFO):
    assert distribute.resolve_jit_compile(Config(**flags)) is on
  assert why in caplog.text


# ---- Intra-op threads -----------------------------------------------------------------------


@pytest.mark.parametrize("flags,cores,accelerator,environment,threads", [
    (dict(), 2, False, {}, 1),  # the measured case: a small CPU-only machine
    (dict(), 1, False, {}, 1),
    (dict(), 3, False, {}, 0),  # larger machines keep TensorFlow's default
    (dict(), None, False, {}, 0),  # unknown core count: the default
    (dict(), 2, True, {}, 0),  # a GPU trains: the CPU only feeds it
    (dict(distribution="tpu", tpu="t"), 2, False, {}, 0),
    (dict(), 2, False, {"TF_NUM_INTRAOP_THREADS": "2"}, 0),  # the user's own setting stands
    (dict(intra_op_threads=3), 2, False, {"TF_NUM_INTRAOP_THREADS": "2"}, 3),  # the flag wins
])
def test_intra_op_threads_auto_is_one_only_on_small_cpu_machines(flags, cores, accelerator,
                                                                 environment, threads):
  n, why = distribute.intra_op_threads(Config(**flags), cores=cores, accelerator=accelerator,
                                       environment=environment)
  assert n == threads and why


def test_intra_op_threads_reach_tensorflow_and_a_late_flag_is_one_clear_error():
  code = (
      "import tensorflow as tf\n"
      "from engine import loop\n"
      "from engine.config import Config, ConfigError\n"
      "loop.configure_tensorflow(Config(intra_op_threads=3))\n"
      "tf.constant(1.0) + 1.0\n"  # TensorFlow now runs: the pool is fixed
      "print('threads', tf.config.threading.get_intra_op_parallelism_threads())\n"
      "loop.configure_tensorflow(Config(intra_op_threads=3))\n"  # the same value: nothing to do
      "try:\n"
      "  loop.configure_tensorflow(Config(intra_op_threads=1))\n"
      "except ConfigError as e:\n"
      "  print('error', e)\n")
  env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "threads 3" in out.stdout
  assert "error invalid --intra_op_threads=1: TensorFlow is already initialised" in out.stdout
