"""`--strategy=all`: every imbalance strategy on the same split, from the same initial weights.

  <model_dir>/initial_weights*     the weights every run starts from (saved by the first run)
  <model_dir>/<strategy>/          one ordinary run each (engine/loop.py), with its own export
  <model_dir>/comparison.json      test metrics at 0.5 and at the chosen threshold, per strategy
  <model_dir>/comparison.md        the same, as a table

As in TensorFlow's imbalanced-data tutorial, the initial weights are saved once and loaded by
each run, and each run then sets its own output bias (engine/losses.py `initial_bias`:
log(pos/neg) for `baseline`, log(p/(1-p)) with p = `positive_fraction` for `oversample` and
`class_weight`). Same seed means the same split; so the runs differ only in the strategy.
Running again resumes every run that has not finished.
"""

from __future__ import annotations

import logging
import os

from engine import loop, run_dir
from engine.config import STRATEGIES, Config
from input_pipeline.loading import open_data

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
INITIAL_WEIGHTS = "initial_weights"
TEST_KEYS = ("auc", "prc", "precision", "recall", "tp", "fp", "tn", "fn", "loss")


def train_all(config: Config, model_dir: str, *, load_data_fn=None) -> dict:
  """Trains one model per strategy in `<model_dir>/<strategy>` and compares them.

  Args:
    config: the shared config; its `strategy` is replaced by each of STRATEGIES.
    model_dir: the parent directory of the runs.
    load_data_fn: optional, as for `loop.train_and_evaluate`. The in-memory splits do not
      depend on the strategy, so they are loaded once and shared by the runs.

  Returns:
    comparison.json's content: {strategy: {"test": {...}, "threshold": {...}, ...}}; or, if a
    run was stopped by SIGTERM, that run's `{"preempted": True, ...}`.

  Raises:
    ConfigError: the config is invalid for one of the strategies (checked before any run).
    DataError, NumericalError: as `train_and_evaluate`.
  """
  # Every strategy's config is built (and so validated) before the first run starts: an
  # oversample-only constraint must not fail after an hour of baseline training.
  configs = {s: config.replace(strategy=s) for s in STRATEGIES}
  run_dir.check_writable(model_dir)
  os.makedirs(model_dir, exist_ok=True)
  initial = os.path.join(model_dir, INITIAL_WEIGHTS)
  if config.fresh:
    for name in os.listdir(model_dir):
      if name.startswith(INITIAL_WEIGHTS):
        os.remove(os.path.join(model_dir, name))
  data = open_data(config, load_data_fn)  # Once: the split does not depend on the strategy.
  results = {}
  for s, c in configs.items():
    logging.info("=== strategy %s (%d of %d) ===", s, len(results) + 1, len(configs))
    results[s] = loop.train_and_evaluate(c, os.path.join(model_dir, s), initial_weights=initial,
                                         data=data)
    if results[s].get("preempted"):  # SIGTERM: stop here; running again resumes this run.
      return results[s]
  comparison = summarise(results)
  run_dir.write_json(os.path.join(model_dir, COMPARISON_JSON), comparison)
  table = markdown_table(comparison)
  run_dir.write_atomic(os.path.join(model_dir, COMPARISON_MD), table)
  print(console_summary(comparison))
  return comparison


def summarise(results: dict[str, dict]) -> dict:
  """comparison.json's content from each strategy's results.json content.

  `rank_on_validation` orders the strategies by validation precision at their threshold (for
  a recall target, every threshold reaches the target on validation, so the cheapest one to
  operate is the best); by validation cost for a cost-based threshold. Test figures play no
  part in the ranking.
  """
  out = {}
  for s, r in results.items():
    th = r["threshold"]
    out[s] = {
        "test": {k: r["test"][k] for k in TEST_KEYS},
        "validation": {k: r["validation"][k] for k in TEST_KEYS},
        "threshold": th,
        "best_epoch": r["best_epoch"], "monitor": r["monitor"], "epochs_run": r["epochs_run"],
        "train_seconds": r["train_seconds"],
    }

  def validation_score(s):
    th = out[s]["threshold"]
    v = th["validation"]
    if "fp_cost" in th:
      return -(th["fp_cost"] * v["fp"] + th["fn_cost"] * v["fn"])
    return v["precision"]

  for rank, s in enumerate(sorted(out, key=validation_score, reverse=True), start=1):
    out[s]["rank_on_validation"] = rank
  return out


def _rule(th: dict) -> tuple[str, str]:
  """(how the threshold was chosen, what ranks the strategies), in words."""
  if "fp_cost" in th:
    cost = f"{th['fp_cost']:g}*FP + {th['fn_cost']:g}*FN"
    return f"the lowest validation cost {cost}", f"the lowest validation cost {cost}"
  return (f"the highest threshold reaching recall {th['target_recall']:g} on validation",
          "the highest validation precision at its threshold")


def console_summary(comparison: dict) -> str:
  """The comparison in a few lines that fit a 100-column terminal (comparison.md has all)."""
  _, ranked = _rule(next(iter(comparison.values()))["threshold"])
  lines = [f"Ranked by {ranked} (test figures at t):"]
  for s, c in sorted(comparison.items(), key=lambda kv: kv[1]["rank_on_validation"]):
    th, v = c["threshold"], c["validation"]
    lines.append(
        f"  {c['rank_on_validation']}. {s:<12} best epoch {c['best_epoch']:3d}  val prc "
        f"{v['prc']:.4f}  t {th['value']:<9.4g} test precision {th['test']['precision']:.4f} "
        f"recall {th['test']['recall']:.4f}" + ("  (see warnings)" if th.get("warnings") else ""))
  return "\n".join(lines)


def markdown_table(comparison: dict) -> str:
  """The comparison as Markdown: the best epoch's validation figures, the same weights' test
  figures at the chosen threshold and at 0.5, and the thresholds that are called out."""
  first = next(iter(comparison.values()))
  chosen, ranked = _rule(first["threshold"])
  lines = [
      "# Strategy comparison", "",
      f"Each strategy's weights are those of its best epoch by {first.get('monitor', 'val_prc')}"
      f" (column `best epoch`); `val` columns are that epoch's validation figures, `test` "
      "columns the same weights on the test split. AUC and PR-AUC are exact (over all "
      f"predictions). The threshold `t` is {chosen}. Rank 1 has {ranked}; test figures play no "
      "part in the ranking.", "",
      "| strategy | rank | best epoch | val PR-AUC | test AUC | test PR-AUC | t | val precision@t "
      "| test precision@t | test recall@t | test FP@t | test FN@t | test precision@0.5 "
      "| test recall@0.5 | test FP@0.5 | test FN@0.5 |",
      "|---" * 16 + "|",
  ]
  called_out = []
  for s, c in sorted(comparison.items(), key=lambda kv: kv[1]["rank_on_validation"]):
    t, v, th = c["test"], c["validation"], c["threshold"]
    lines.append(
        f"| {s} | {c['rank_on_validation']} | {c['best_epoch']} | {v['prc']:.4f} "
        f"| {t['auc']:.4f} | {t['prc']:.4f} | {th['value']:.4g} "
        f"| {th['validation']['precision']:.4f} | {th['test']['precision']:.4f} "
        f"| {th['test']['recall']:.4f} | {th['test']['fp']} | {th['test']['fn']} "
        f"| {t['precision']:.4f} | {t['recall']:.4f} | {t['fp']} | {t['fn']} |")
    called_out += [f"- **{s}**, t = {th['value']:.4g}: {w}" for w in th.get("warnings", [])]
  if called_out:
    lines += ["", "## Thresholds to distrust", ""] + called_out
  return "\n".join(lines) + "\n"
