"""One number per name: the console, results.json, comparison.json and TensorBoard agree.

Every metric name that appears in any of them has one value per (strategy, split, epoch): the
exact `auc`/`prc` are never confused with Keras' 200-threshold `auc_streaming`/`prc_streaming`,
and the best epoch's validation figures are the same wherever they are reported.
"""

import collections
import os
import re

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine import compare
from engine.config import STRATEGIES
from tests.conftest import read_json

MACHINE = 1e-6  # JSON and TensorBoard (float32 scalars) hold the full value.
PRINTED = 5e-5  # The console prints 4 decimals.
EPOCH = re.compile(r"epoch +(\d+)  train loss (\S+)  val (.*?)  \S+ ex/s")
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e-?\d+)?$")


def _console(log: str, values) -> None:
  """Epoch lines and the results table of each strategy's section of the console."""
  sections = re.split(r"=== strategy (\w+) ", log)[1:]
  assert [sections[i] for i in range(0, len(sections), 2)] == list(STRATEGIES)
  for strategy, text in zip(sections[::2], sections[1::2]):
    best = read_json(os.path.join(ALL_RUN, strategy, "results.json"))["best_epoch"]
    epochs = 0
    for m in EPOCH.finditer(text):
      epochs += 1
      epoch = int(m.group(1))
      values[(strategy, "train", epoch, "loss")].append(("console", float(m.group(2)), PRINTED))
      pairs = m.group(3).split()
      for name, v in zip(pairs[::2], pairs[1::2]):
        values[(strategy, "validation", epoch, name)].append(("console", float(v), PRINTED))
    assert epochs == 2
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["threshold"])
    columns = lines[header].split()
    for line in lines[header + 1:header + 5]:
      name, cells = line[:line.index(" ")], line.split()[-len(columns):]
      split = name if "@t" not in line else name + "@t"
      for column, cell in zip(columns, cells):
        if NUMBER.match(cell):
          values[(strategy, split, best, column)].append(("console", float(cell), PRINTED))


def _results(strategy: str, r: dict, source: str, values) -> None:
  best = r["best_epoch"]
  for split in ("validation", "test"):
    for name, v in r[split].items():
      values[(strategy, split, best, name)].append((source, v, MACHINE))
    for name, v in r["threshold"][split].items():
      values[(strategy, split + "@t", best, name)].append((source, v, MACHINE))
    values[(strategy, split + "@t", best, "threshold")].append(
        (source, r["threshold"]["value"], MACHINE))
  values[(strategy, "validation", best, "best_epoch")].append((source, best, 0))


def _tensorboard(strategy: str, values) -> None:
  for run, split in (("train", "train"), ("validation", "validation"), ("test", "test"),
                     ("validation_best", "validation")):
    acc = EventAccumulator(os.path.join(ALL_RUN, strategy, "logs", run),
                           size_guidance={"tensors": 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
      for event in acc.Tensors(tag):
        proto = event.tensor_proto
        if proto.dtype != 1 or proto.tensor_shape.dim:  # Scalars only (DT_FLOAT, rank 0).
          continue
        values[(strategy, split, event.step, tag)].append(
            (f"tensorboard {run}", float(proto.float_val[0]), MACHINE))


ALL_RUN = None


def test_every_name_has_one_value_per_strategy_split_and_epoch(all_run):
  global ALL_RUN
  ALL_RUN = all_run
  values = collections.defaultdict(list)
  _console(open(os.path.join(os.path.dirname(all_run), "stdout.log")).read(), values)
  comparison = read_json(os.path.join(all_run, compare.COMPARISON_JSON))
  for s in STRATEGIES:
    _results(s, read_json(os.path.join(all_run, s, "results.json")), "results.json", values)
    c = comparison[s]
    _results(s, {**c, "validation": c["validation"], "test": c["test"]}, "comparison.json",
             values)
    _tensorboard(s, values)
  sources = {src for seen in values.values() for src, _, _ in seen}
  assert {"console", "results.json", "comparison.json", "tensorboard validation",
          "tensorboard validation_best", "tensorboard test", "tensorboard train"} <= sources
  shared = 0
  for key, seen in values.items():
    if len({src for src, _, _ in seen}) > 1:
      shared += 1
    first = seen[0]
    for other in seen[1:]:
      tolerance = max(first[2], other[2])
      assert abs(other[1] - first[1]) <= tolerance, (key, first, other)
  # Not vacuous: the names the console shows are the names TensorBoard and results.json use.
  assert shared > 100
  for s in STRATEGIES:
    best = read_json(os.path.join(all_run, s, "results.json"))["best_epoch"]
    for name in ("prc", "auc", "loss", "tp", "precision"):
      seen = {src for src, _, _ in values[(s, "test", best, name)]}
      assert {"console", "results.json", "comparison.json", "tensorboard test"} <= seen, name
    for name in ("prc", "loss"):
      seen = {src for src, _, _ in values[(s, "validation", best, name)]}
      assert {"console", "results.json", "tensorboard validation",
              "tensorboard validation_best"} <= seen, name


def test_streaming_estimates_carry_their_own_name(all_run):
  for s in STRATEGIES:
    r = read_json(os.path.join(all_run, s, "results.json"))
    for split in ("validation", "test"):
      assert {"auc", "prc", "auc_streaming", "prc_streaming"} <= set(r[split])
      assert not {"auc_exact", "prc_exact"} & set(r[split])
    assert not np.isnan(r["test"]["prc_streaming"])
