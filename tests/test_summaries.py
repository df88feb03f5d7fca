"""TensorBoard sees what a run wrote: a real `tensorboard` process, read over its HTTP API."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine.config import STRATEGIES
from engine.summaries import Summaries

START_TIMEOUT_S = 60


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(all_run):
  """Base URL of a tensorboard serving the `--strategy=all` run; killed at teardown."""
  port = free_port()
  proc = subprocess.Popen(
      [sys.executable, "-m", "tensorboard.main", f"--logdir={all_run}", f"--port={port}",
       "--host=127.0.0.1", "--reload_interval=0", "--load_fast=false"],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  base = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
      if proc.poll() is not None:
        pytest.fail(f"tensorboard exited: {proc.stderr.read().decode()[-2000:]}")
      try:
        # /data/runs answers once the first load of the logdir is done (reload_interval=0
        # loads once, before serving).
        if len(get(base, "/data/runs")) >= 9:
          break
      except (urllib.error.URLError, ConnectionError):
        pass
      if time.monotonic() > deadline:
        pytest.fail(f"tensorboard did not serve {all_run} within {START_TIMEOUT_S}s")
      time.sleep(0.5)
    yield base
  finally:
    proc.kill()
    proc.wait(timeout=30)


def get(base: str, path: str, body: dict | None = None):
  data = json.dumps(body).encode() if body is not None else None
  request = urllib.request.Request(base + path, data=data,
                                   headers={"Content-Type": "application/json"} if data else {})
  with urllib.request.urlopen(request, timeout=10) as r:
    return json.loads(r.read())


def test_runs_of_every_strategy(tensorboard):
  runs = set(get(tensorboard, "/data/runs"))
  for s in STRATEGIES:
    assert {f"{s}/logs/train", f"{s}/logs/validation", f"{s}/logs/test"} <= runs


def test_scalar_tags(tensorboard):
  tags = get(tensorboard, "/data/plugin/scalars/tags")
  for s in STRATEGIES:
    # The training stream has only Keras' estimates: no exact `auc`/`prc` to confuse them with.
    train = set(tags[f"{s}/logs/train"])
    assert {"loss", "auc_streaming", "prc_streaming", "recall", "examples_per_second"} <= train
    assert not {"auc", "prc"} & train
    assert {"loss", "auc", "prc", "prc_streaming", "precision", "recall"} <= set(
        tags[f"{s}/logs/validation"])
    assert {"auc", "prc", "auc_streaming"} <= set(tags[f"{s}/logs/test"])
    assert {"best_epoch", "auc", "prc"} <= set(tags[f"{s}/logs/validation_best"])
    # results.json's nested recall_at_fpr, under flat names, wherever exact metrics are.
    for run in ("validation", "test", "validation_best"):
      assert {"recall_at_fpr_0.01", "recall_at_fpr_0.001"} <= set(tags[f"{s}/logs/{run}"])
      assert "recall_at_fpr" not in tags[f"{s}/logs/{run}"]


def test_pr_curves_for_validation_and_test(tensorboard):
  tags = get(tensorboard, "/data/plugin/pr_curves/tags")
  for s in STRATEGIES:
    for split in ("validation", "test"):
      # The plugin suffixes the tag with "/pr_curves".
      assert "pr_curve/pr_curves" in tags[f"{s}/logs/{split}"]
  for s in STRATEGIES:
    curve = get(tensorboard, f"/data/plugin/pr_curves/pr_curves?run={s}/logs/test"
                "&tag=pr_curve/pr_curves")
    entry = curve[f"{s}/logs/test"][0]
    # The lowest point flags every row: recall 1 and precision the base rate (7 of 4000 test
    # rows); the curve resolves the first fraud caught (1 of 7) and below, for every
    # strategy, however its scores crowd.
    assert len(entry["precision"]) == len(entry["recall"]) >= 2
    assert entry["recall"][0] == pytest.approx(1.0)
    assert entry["precision"][0] == pytest.approx(7 / 4000)
    assert min(entry["recall"]) <= 1 / 7 + 1e-6
    assert any(abs(r - 1 / 7) < 1e-6 for r in entry["recall"])
    assert entry["recall"] == sorted(entry["recall"], reverse=True)


def test_images(tensorboard):
  tags = get(tensorboard, "/data/plugin/images/tags")
  for s in STRATEGIES:
    assert {"confusion_matrix_at_0.5", "confusion_matrix_at_threshold", "roc_curve",
            "pr_curve_image", "reliability"} <= set(tags[f"{s}/logs/test"])
  # TensorBoard serves a real picture: a PNG of the figure's size, not a blank one.
  import urllib.parse
  import tensorflow as tf
  entries = get(tensorboard, "/data/plugin/images/images?" + urllib.parse.urlencode(
      {"run": "oversample/logs/test", "tag": "roc_curve"}))
  with urllib.request.urlopen(tensorboard + "/data/plugin/images/individualImage?" +
                              entries[0]["query"], timeout=10) as r:
    png = r.read()
  pixels = tf.io.decode_png(png, channels=3).numpy()
  assert pixels.shape == (320, 360, 3)
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10


def test_hparams_compare_the_strategies(tensorboard, all_run):
  experiment = get(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
  names = {h["name"] for h in experiment["hparamInfos"]}
  assert {"strategy", "seed", "learning_rate", "target_recall", "calibration"} <= names
  metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
  assert {("test", "prc"), ("test", "auc"), ("validation_best", "prc"),
          ("validation_best", "best_epoch")} <= metrics
  groups = get(tensorboard, "/data/plugin/hparams/session_groups",
               {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                                          "STATUS_FAILURE", "STATUS_RUNNING"],
                "colParams": [], "startIndex": 0, "sliceSize": 10})
  strategies = {g["hparams"]["strategy"] for g in groups["sessionGroups"]}
  assert strategies == set(STRATEGIES)
  # Each session carries its test PR-AUC, and the best epoch's validation figures (not the
  # last epoch's): the same numbers as that run's results.json.
  from tests.conftest import read_json
  for g in groups["sessionGroups"]:
    values = {(m["name"]["group"], m["name"]["tag"]): m["value"] for m in g["metricValues"]}
    results = read_json(os.path.join(all_run, g["hparams"]["strategy"],
                                     "results.json"))
    assert values[("test", "prc")] == pytest.approx(results["test"]["prc"], abs=1e-6)
    assert values[("validation_best", "prc")] == pytest.approx(results["validation"]["prc"],
                                                               abs=1e-6)
    assert values[("validation_best", "best_epoch")] == results["best_epoch"]


def test_nested_metrics_become_flat_scalars(tmp_path):
  # In-process, read back as the end-to-end tests read event files.
  summaries = Summaries(str(tmp_path))
  for step, r in ((1, 0.25), (2, 0.5)):
    summaries.scalars("validation", {"auc": 0.9, "recall_at_fpr": {"0.01": r, "0.001": r / 2}},
                      step)
  summaries.close()
  acc = EventAccumulator(str(tmp_path / "logs" / "validation"), size_guidance={"tensors": 0})
  acc.Reload()
  assert set(acc.Tags()["tensors"]) == {"auc", "recall_at_fpr_0.01", "recall_at_fpr_0.001"}
  values = {tag: [(e.step, float(np.asarray(e.tensor_proto.float_val)[0]))
                  for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]}
  assert values["recall_at_fpr_0.01"] == [(1, 0.25), (2, 0.5)]
  assert values["recall_at_fpr_0.001"] == [(1, 0.125), (2, 0.25)]
