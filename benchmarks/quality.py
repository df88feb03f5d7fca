"""Model quality on several tables in one run: the engine as a user runs it against tree peers.

  python benchmarks/quality.py --tables=creditcard,creditcard_time,transactions,merchants \
      --seeds=0,1,2,3,4 --json=quality.json --markdown=quality.md \
      [--config NAME="main.py flags"]... [--defaults=headline,baseline,class_weight] \
      [--peers=xgboost,lightgbm,catboost] [--engine_only | --peers_only]

Tables (benchmarks/tables.py): `creditcard`, the credit-card set with main.py's stratified
random split (64/16/20), one split per seed; `creditcard_time`, the same set split by time
(`--split=time --time_column=Time`: the last 20% in time is test; the seed changes only the
training); `transactions` and `merchants`, two generated tables of different shapes
(tests/transactions.py), split by time, whose generators also give each row's true fraud
probability: the oracle, whose test AP is reported beside the contenders'. The true probability
never reaches the engine: it is not in the CSV main.py reads. On `merchants`, whose oracle knows
each merchant's risk, the ceiling (benchmarks/ceiling.py: the best probability learnable from
a split's training and validation rows) is reported too.

Contenders, per table and seed, on the same rows of each split:
  - the engine: each configuration is `python main.py <table flags> <its flags> --seed=S` in a
    fresh process and model directory, then `python main.py --mode=predict` with its export on
    the test rows, which gives the per-row test scores. The defaults are `headline`
    (`--strategy=oversample`, the README's command), `baseline` and `class_weight`
    (`--defaults` runs a subset); `--config NAME="flags"` adds one (or replaces one of the
    same name). Its wall time is the training process's, from start to exit.
  - the peers (benchmarks/peers.py, the `bench` extra): XGBoost, LightGBM and CatBoost in the
    configurations of issue 26, each fitted in a worker process on the engine's split, with the
    same raw columns and the time features the engine can derive (`--time_features` where main.py
    has it: give it in a --config). Their wall time is the fit's.

The split is the engine's own (input_pipeline's reader, column roles, row checks and split, in
benchmarks/tables.py), and each engine run is checked against it: its results.json must count the
same rows and frauds in every split, and its test AP must match the AP of its exported scores on
the benchmark's test rows.

Reported per table: each contender's test AP, ROC-AUC and recall at a 1% false-positive rate, per
seed and the mean; each engine configuration's paired difference in test AP to the best peer
(the peer with the highest mean test AP), per seed and the mean, with a bootstrap interval: the
test rows of each seed are resampled with replacement, the same resample for both contenders,
and the interval is the 2.5 and 97.5 percentiles of the mean-over-seeds difference; each
contender's mean wall time, as an AP-against-time table; the oracle's AP. Everything goes to
--json; a markdown summary, for BUILD.md, is printed and written to --markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This process imports engine and input_pipeline (neither loads TensorFlow on import).
sys.path.insert(0, ROOT)

from benchmarks import tables  # noqa: E402

ENGINE_DEFAULTS = {"headline": "--strategy=oversample", "baseline": "--strategy=baseline",
                   "class_weight": "--strategy=class_weight"}
PEERS = ("xgboost", "lightgbm", "catboost")
METRICS = ("ap", "roc_auc", "recall_at_fpr_0.01")
FPR = 0.01


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
  """Exact test AP, ROC-AUC and recall at a 1% false-positive rate of `scores`."""
  from sklearn import metrics as skm

  from engine import evaluation
  return {"ap": float(skm.average_precision_score(labels, scores)),
          "roc_auc": float(skm.roc_auc_score(labels, scores)),
          "recall_at_fpr_0.01": float(evaluation.recall_at_fpr(labels, scores, (FPR,))["0.01"])}


def ranking(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """What `weighted_ap` needs of one contender's scores, computed once for every resample: the
  rows from the highest score down, and the last position of each run of tied scores."""
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  ordered = np.asarray(scores)[order]
  ends = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1)
  return order, ends


def weighted_ap(labels: np.ndarray, order: np.ndarray, ends: np.ndarray,
                weights: np.ndarray) -> float:
  """Average precision with row weights (a bootstrap resample's counts): sklearn's
  `average_precision_score(labels, scores, sample_weight=weights)`, tied scores flagged
  together, from `ranking(scores)`. NaN when the weighted positives are zero."""
  w = np.asarray(weights, np.float64)[order]
  y = np.asarray(labels)[order]
  tp = np.cumsum(w * y)[ends]
  fp = np.cumsum(w * (1 - y))[ends]
  if tp[-1] <= 0:
    return float("nan")
  gained = np.diff(tp, prepend=0.0)
  flagged = tp + fp
  precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
  return float(np.sum(gained * precision) / tp[-1])


def paired_bootstrap(labels: list[np.ndarray], scores: dict[str, list[np.ndarray]],
                     reference: str, *, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, dict]:
  """The mean-over-seeds test-AP difference of each contender to `reference`, with a paired
  bootstrap interval.

  Args:
    labels: the test labels of each seed.
    scores: {contender: the test scores of each seed, aligned with `labels`}; holds `reference`.
    reference: the contender every other one is compared with.
    resamples: bootstrap resamples; each draws every seed's test rows with replacement, and
      scores every contender on the same draw.
    seed: the resampling's random seed.
    level: the interval's coverage, from the percentiles (1 - level) / 2 and (1 + level) / 2.

  Returns:
    {contender: {"per_seed": [AP difference of each seed], "mean": their mean, "low", "high"}}
    for every contender but `reference`.
  """
  from sklearn import metrics as skm
  rng = np.random.default_rng(seed)
  others = [c for c in scores if c != reference]
  ranked = {c: [ranking(s) for s in scores[c]] for c in scores}
  draws = np.empty((resamples, len(others)))
  for b in range(resamples):
    total = np.zeros(len(others))
    for k, y in enumerate(labels):
      w = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
      base = weighted_ap(y, *ranked[reference][k], w)
      total += [weighted_ap(y, *ranked[c][k], w) - base for c in others]
    draws[b] = total / len(labels)
  tail = (1 - level) / 2 * 100
  out = {}
  for j, c in enumerate(others):
    per_seed = [float(skm.average_precision_score(y, s) - skm.average_precision_score(y, r))
                for y, s, r in zip(labels, scores[c], scores[reference])]
    low, high = np.nanpercentile(draws[:, j], [tail, 100 - tail])
    out[c] = {"per_seed": per_seed, "mean": float(np.mean(per_seed)), "low": float(low),
              "high": float(high)}
  return out


def _run(cmd: list[str], what: str) -> tuple[subprocess.CompletedProcess, float]:
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode != 0:
    raise SystemExit(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
  return proc, wall


def run_engine(table: tables.Table, split: tables.Split, *, name: str, flags: list[str],
               seed: int, test_csv: str, workdir: str) -> tuple[dict, np.ndarray]:
  """One engine configuration on one seed: main.py trains, then predicts the test rows.

  Returns:
    (its figures, its test scores in the order of the split's test rows).

  Raises:
    SystemExit: a failed process, or a run whose split is not the benchmark's.
  """
  import pandas as pd
  model_dir = os.path.join(workdir, f"{table.name}-{name}-{seed}")
  main_py = os.path.join(ROOT, "main.py")
  # The configuration's flags come after the table's, so they win where both set one.
  _, wall = _run([sys.executable, main_py, *table.flags(), *flags, f"--seed={seed}",
                  f"--model_dir={model_dir}", "--fresh"], f"engine {name} seed {seed}")
  with open(os.path.join(model_dir, "results.json")) as f:
    results = json.load(f)
  expected = {s: {"rows": int((split.split == k).sum()), "positives": int(split.labels(k).sum())}
              for k, s in enumerate(("train", "validation", "test"))}
  if results["data"] != expected:
    raise SystemExit(f"{model_dir}: the engine's split {results['data']} is not the "
                     f"benchmark's {expected}: the peers would be scored on other rows")
  scores_csv = os.path.join(model_dir, "test_scores.csv")
  _run([sys.executable, main_py, "--mode=predict", f"--export_dir={model_dir}/export",
        f"--data_path={test_csv}", f"--output={scores_csv}"], f"predict {name} seed {seed}")
  scores = pd.read_csv(scores_csv)["probability"].to_numpy(np.float64)
  out = metrics(split.labels(2), scores)
  # The export scores raw rows in float32 where the run scored its encoded arrays: rankings can
  # differ at ties, not more.
  out.update(wall_seconds=wall, train_seconds=results["train_seconds"],
             epochs_run=results["epochs_run"], best_epoch=results["best_epoch"],
             validation_ap=results["validation"]["prc"], results_test_ap=results["test"]["prc"],
             model_dir=model_dir)
  if abs(out["ap"] - out["results_test_ap"]) > 0.005:
    print(f"WARNING {name} seed {seed}: the export's test AP {out['ap']:.4f} differs from "
          f"results.json's {out['results_test_ap']:.4f}", flush=True)
  return out, scores


def run_peers(table: tables.Table, split: tables.Split, *, peers: list[str], seed: int,
              workdir: str, max_rounds: int) -> dict:
  """The peers on one seed, in a worker process: {peer: (figures, test scores)}."""
  spec = os.path.join(workdir, f"{table.name}.table.json")
  with open(spec, "w") as f:
    json.dump({"name": table.name, "path": table.path, "fields": table.fields}, f)
  output = os.path.join(workdir, f"{table.name}-peers-{seed}.npz")
  proc, _ = _run([sys.executable, os.path.join(ROOT, "benchmarks", "peers.py"),
                  f"--table={spec}", f"--seed={seed}", f"--peers={','.join(peers)}",
                  f"--output={output}", f"--max_rounds={max_rounds}"], f"peers on {table.name} seed {seed}")
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  saved = np.load(output)
  if not np.array_equal(saved["test_positions"], split.test_positions()):
    raise SystemExit(f"the peers' test rows of {table.name} seed {seed} are not the engine's")
  y_val = split.labels(1)
  out = {}
  for name in peers:
    figures = metrics(split.labels(2), saved[f"{name}_test"])
    figures.update(wall_seconds=summary[name]["fit_seconds"], rounds=summary[name]["rounds"],
                   validation_ap=metrics(y_val, saved[f"{name}_validation"])["ap"])
    out[name] = (figures, saved[f"{name}_test"])
  return out


def run_table(table: tables.Table, args, engine: dict[str, list[str]], peers: list[str],
              seeds: list[int]) -> dict:
  """Every contender on every seed of one table, then the comparison."""
  frame = tables.read(table)
  report = {"rows": int(len(frame)), "flags": table.flags(), "seeds": [], "contenders": {}}
  labels, scores = [], {}

  def record(name, kind, figures, test_scores, seed):
    c = report["contenders"].setdefault(name, {"kind": kind, "runs": []})
    if kind == "engine":
      c["flags"] = engine[name]
    c["runs"].append(dict(figures, seed=seed))
    scores.setdefault(name, []).append(test_scores)
    print(f"{table.name:<16} seed {seed} {name:<14} " +
          " ".join(f"{k} {figures[k]:.4f}" for k in METRICS) +
          f" wall {figures['wall_seconds']:.1f}s", flush=True)

  for seed in seeds:
    split = tables.split(table, seed, frame)
    y = split.labels(2)
    labels.append(y)
    entry = {"seed": seed, "test_rows": int(len(y)), "test_positives": int(y.sum())}
    if table.true_probability is not None:
      entry["oracle"] = metrics(y, table.true_probability[split.test_positions()])
    if table.ceiling is not None:
      entry["ceiling"] = metrics(y, table.ceiling(split))
    report["seeds"].append(entry)
    test_csv = os.path.join(args.workdir, f"{table.name}-test-{seed}.csv")
    if engine:
      tables.write_test_rows(frame, split, test_csv)
    for name, flags in engine.items():
      record(name, "engine", *run_engine(table, split, name=name, flags=flags, seed=seed,
                                         test_csv=test_csv, workdir=args.workdir), seed)
    if peers:
      for name, (figures, s) in run_peers(table, split, peers=peers, seed=seed,
                                          workdir=args.workdir,
                                          max_rounds=args.max_rounds).items():
        record(name, "peer", figures, s, seed)
  for c in report["contenders"].values():
    c["mean"] = {k: float(np.mean([r[k] for r in c["runs"]]))
                 for k in (*METRICS, "wall_seconds")}
  for bound in ("oracle", "ceiling"):
    if bound in report["seeds"][0]:
      report[f"{bound}_mean"] = {k: float(np.mean([e[bound][k] for e in report["seeds"]]))
                                 for k in METRICS}
  peer_means = {n: report["contenders"][n]["mean"]["ap"] for n in peers}
  if engine and peers:
    best = max(peer_means, key=peer_means.get)
    report["best_peer"] = best
    compared = {n: scores[n] for n in (*engine, best)}
    report["paired_to_best_peer"] = paired_bootstrap(labels, compared, best,
                                                     resamples=args.bootstrap, seed=0)
  return report


def markdown(report: dict) -> str:
  """The readable summary of a whole run, one section per table."""
  lines = [f"Quality benchmark, {report['started']} UTC on {report['machine']}; split seeds "
           f"{','.join(map(str, report['seeds']))}; exact test metrics; engine wall time is the "
           "whole main.py training process, a peer's its fit.", ""]
  for name, t in report["tables"].items():
    first = t["seeds"][0]
    lines += [f"### {name}", "",
              f"{t['rows']:,} rows; test {first['test_rows']:,} rows, "
              f"{', '.join(str(e['test_positives']) for e in t['seeds'])} frauds by seed; "
              f"engine flags `{' '.join(f for f in t['flags'] if not f.startswith('--data_path'))}`",
              ""]
    if "oracle_mean" in t:
      o = t["oracle_mean"]
      lines += [f"Oracle (the true fraud probability): test AP {o['ap']:.4f}, ROC-AUC "
                f"{o['roc_auc']:.4f}, recall at 1% FPR {o['recall_at_fpr_0.01']:.4f}", ""]
    if "ceiling_mean" in t:
      o = t["ceiling_mean"]
      lines += [f"Ceiling (the best probability learnable from the training and validation "
                f"rows, benchmarks/ceiling.py): test AP {o['ap']:.4f}, ROC-AUC "
                f"{o['roc_auc']:.4f}, recall at 1% FPR {o['recall_at_fpr_0.01']:.4f}", ""]
    lines += ["| contender | test AP | AP per seed | ROC-AUC | recall at 1% FPR | wall s |",
              "|---|---:|---|---:|---:|---:|"]
    for c_name, c in t["contenders"].items():
      m = c["mean"]
      label = f"{c_name} (`{' '.join(c['flags'])}`)" if c["kind"] == "engine" else c_name
      lines.append(f"| {label} | {m['ap']:.4f} | "
                   + " ".join(f"{r['ap']:.4f}" for r in c["runs"])
                   + f" | {m['roc_auc']:.4f} | {m['recall_at_fpr_0.01']:.4f} | "
                   f"{m['wall_seconds']:.1f} |")
    if "paired_to_best_peer" in t:
      lines += ["", f"Engine minus the best peer ({t['best_peer']}, by mean test AP), paired "
                f"on the same test rows; 95% bootstrap interval of the mean over seeds "
                f"({report['bootstrap']} resamples):", "",
                "| engine | AP difference | per seed | 95% interval |", "|---|---:|---|---|"]
      for c_name, d in t["paired_to_best_peer"].items():
        lines.append(f"| {c_name} | {d['mean']:+.4f} | "
                     + " ".join(f"{v:+.4f}" for v in d["per_seed"])
                     + f" | [{d['low']:+.4f}, {d['high']:+.4f}] |")
    lines += ["", "AP against time (fastest first):", "",
              "| contender | wall s | test AP |", "|---|---:|---:|"]
    for c_name, c in sorted(t["contenders"].items(), key=lambda kv: kv[1]["mean"]["wall_seconds"]):
      lines.append(f"| {c_name} | {c['mean']['wall_seconds']:.1f} | {c['mean']['ap']:.4f} |")
    lines.append("")
  return "\n".join(lines)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--tables", default=",".join(tables.NAMES),
                 help=f"comma-separated, of {', '.join(tables.NAMES)}")
  p.add_argument("--seeds", default="0,1,2,3,4", help="split seeds (the random split's; under "
                 "the time split, the training's)")
  p.add_argument("--config", action="append", default=[], metavar='NAME="FLAGS"',
                 help="an engine configuration besides the defaults "
                      f"({', '.join(f'{k}: {v}' for k, v in ENGINE_DEFAULTS.items())}), e.g. "
                      "'ensemble16=--strategy=baseline --ensemble=16' (repeatable)")
  p.add_argument("--defaults", default=",".join(ENGINE_DEFAULTS),
                 help="comma-separated default configurations to run; empty: none (only the "
                      "--config ones, e.g. for an ablation)")
  p.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers; empty: none")
  only = p.add_mutually_exclusive_group()
  only.add_argument("--engine_only", action="store_true", help="no peers")
  only.add_argument("--peers_only", action="store_true", help="no engine runs")
  p.add_argument("--json", default=None, help="write the whole report here")
  p.add_argument("--markdown", default=None, help="write the markdown summary here")
  p.add_argument("--data_path", default=None,
                 help="the credit-card CSV (default: main.py's verified, cached download)")
  p.add_argument("--rows", type=int, default=tables.GENERATED_ROWS,
                 help="rows of each generated table")
  p.add_argument("--table_seed", type=int, default=0, help="the generators' seed")
  p.add_argument("--extra_flags", default="",
                 help="main.py flags added to every engine configuration (after its own), e.g. "
                      "--epochs=2 for a smoke run")
  p.add_argument("--max_rounds", type=int, default=3000,
                 help="the peers' boosting rounds at most (issue 26's configurations: 3000)")
  p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
  p.add_argument("--workdir", default=None,
                 help="tables, model directories and scores (default: a new temp dir)")
  args = p.parse_args(argv)
  unknown = set(args.tables.split(",")) - set(tables.NAMES)
  if unknown:
    p.error(f"unknown --tables {', '.join(sorted(unknown))}; choose from {', '.join(tables.NAMES)}")
  unknown = set(filter(None, args.peers.split(","))) - set(PEERS)
  if unknown:
    p.error(f"unknown --peers {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
  unknown = set(filter(None, args.defaults.split(","))) - set(ENGINE_DEFAULTS)
  if unknown:
    p.error(f"unknown --defaults {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(ENGINE_DEFAULTS)}")
  for spec in args.config:
    if "=" not in spec or not spec.partition("=")[0]:
      p.error(f'--config {spec!r}: expected NAME="flags"')
  return args


def main(argv=None):
  args = parse_args(argv)
  args.workdir = args.workdir or tempfile.mkdtemp(prefix="quality-")
  os.makedirs(args.workdir, exist_ok=True)
  seeds = [int(s) for s in args.seeds.split(",")]
  defaults = set(filter(None, args.defaults.split(",")))
  engine = {} if args.peers_only else {n: f.split() for n, f in ENGINE_DEFAULTS.items()
                                       if n in defaults}
  if not args.peers_only:
    for spec in args.config:
      name, _, flags = spec.partition("=")
      engine[name] = flags.split()
    engine = {n: f + args.extra_flags.split() for n, f in engine.items()}
  peers = [] if args.engine_only else [n for n in args.peers.split(",") if n]
  report = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.node()}, {os.cpu_count()} CPU cores, Python "
                       f"{platform.python_version()}",
            "seeds": seeds, "bootstrap": args.bootstrap, "workdir": args.workdir,
            "extra_flags": args.extra_flags, "max_rounds": args.max_rounds,
            "generated_rows": args.rows, "table_seed": args.table_seed, "tables": {}}
  for name in args.tables.split(","):
    table = tables.make(name, args.workdir, creditcard=args.data_path, rows=args.rows,
                        seed=args.table_seed)
    report["tables"][name] = run_table(table, args, engine, peers, seeds)
    if args.json:  # After each table: a long run's finished tables survive a later failure.
      with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
  text = markdown(report)
  print("\n" + text)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
