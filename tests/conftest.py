"""Shared test helpers: small data, the real data when present, and running main.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from engine.config import options

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real credit-card set, where the workplace provides it beside the repository.
REAL_DATA = os.environ.get("IMBALANCED_ENGINE_REAL_DATA",
                           os.path.join(ROOT, "..", "shared", "data", "creditcard.csv.gz"))


def real_data_path() -> str:
  if not os.path.exists(REAL_DATA):
    pytest.skip(f"the real credit-card data is not at {REAL_DATA} "
                "(set IMBALANCED_ENGINE_REAL_DATA to run this test)")
  return REAL_DATA


# The suite trains many tiny runs: they use the MLP, the quick family, unless they name one
# (`model=None` in run_main, or the `default_family` mark, for the tests of the default itself).
# Set at import, so fixtures of every scope see it.
TEST_MODEL = "mlp"
SHIPPED_MODEL = options.DEFAULT_MODEL
options.DEFAULT_MODEL = TEST_MODEL


@pytest.fixture(autouse=True)
def _the_shipped_family_when_marked(request, monkeypatch):
  if "default_family" in request.keywords:
    monkeypatch.setattr(options, "DEFAULT_MODEL", SHIPPED_MODEL)


def run_main(*flags: str, timeout: float = 300, env: dict | None = None,
             model: str | None = TEST_MODEL):
  """Runs main.py in a fresh process (as a user does); returns the CompletedProcess.

  `model` comes first, so a `--model` in `flags` wins; None: main.py's own default."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  flags = ((f"--model={model}",) if model else ()) + flags
  return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *flags],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env)


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def small_frame(rows: int = 2000, positives: int = 40, seed: int = 0) -> pd.DataFrame:
  """A small separable frame with credit-card columns."""
  rng = np.random.default_rng(seed)
  y = np.zeros(rows, np.int64)
  y[:positives] = 1
  rng.shuffle(y)
  v = rng.standard_normal((rows, 28))
  v[y == 1, :3] += 3.0
  frame = pd.DataFrame(v, columns=[f"V{i}" for i in range(1, 29)])
  frame.insert(0, "Time", np.arange(rows, dtype=np.float64))
  frame["Amount"] = rng.uniform(0, 100, rows).round(2)
  frame["Class"] = y
  return frame


@pytest.fixture
def csv_path(tmp_path):
  path = tmp_path / "data.csv"
  small_frame().to_csv(path, index=False)
  return str(path)


# The tiny `--strategy=all` run that the workflow tests (comparison, TensorBoard, export,
# predict) share: training it once keeps the suite fast.
ALL_FLAGS = ("--strategy=all", "--dataset=synthetic", "--synthetic_rows=20000", "--epochs=2",
             "--seed=0")


@pytest.fixture(scope="session")
def all_run(tmp_path_factory) -> str:
  """The model_dir of a finished tiny `--strategy=all` run."""
  model_dir = str(tmp_path_factory.mktemp("all") / "runs")
  proc = run_main(*ALL_FLAGS, f"--model_dir={model_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(os.path.dirname(model_dir), "stdout.log"), "w") as f:
    f.write(proc.stdout)
  return model_dir
