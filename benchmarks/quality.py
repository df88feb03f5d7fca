"""Model quality per strategy, averaged over seeds: runs `main.py` as a user would.

  python benchmarks/quality.py --data_path=creditcard.csv.gz --seeds=0,1,2 \
      --strategies=baseline,class_weight,oversample --keras --json=quality.json
  python benchmarks/quality.py --data_path=creditcard.csv.gz --seeds=0 --strategies= \
      --json=peers.json      # the gradient-boosted-tree peers alone

Each run is a separate `main.py` process with default flags (plus --seed, --data_path,
--target_recall and any extra flags after `--`), in its own model directory. Prints the test
metrics of every run and the mean per strategy, with the quality bar of the engine issue beside
it.

With --keras, each seed also runs the TensorFlow tutorial's Keras recipe (`model.fit`, the
tutorial's model, losses, class weights, element-wise `sample_from_datasets` and early stopping)
on exactly the engine's split and preprocessing for that seed, so the two are compared on the
same test rows: with ~98 test frauds, the split alone moves PR-AUC by several points.

With --peers (the default), each seed also trains XGBoost and LightGBM (early-stopped on the
validation split) on that same split and the same scaled features: the strong non-neural
baselines for tabular fraud data, so the engine is judged against them and not only against
another network. Extra main.py flags after `--` do not reach the peers or the Keras recipe, so
flags that change the split or the preprocessing (--validation_fraction, --clip, ...) make the
comparison unfair.

Every contender is also reported at one operating point, chosen as the engine chooses it
(engine.threshold): the highest threshold whose VALIDATION recall is at least --target_recall,
then that threshold's recall and precision on TEST. A fraud team deploys a threshold, not a
curve; choosing it on validation keeps the test figures honest. The engine's own choice is read
from its results.json (main.py gets the same --target_recall); the others' goes through
`operating_point` below, which calls the same engine.threshold code.

Needs the `bench` extra for the peers: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The workers import engine and input_pipeline (neither loads TensorFlow on import).
sys.path.insert(0, ROOT)
# The tutorial's own Keras recipe on this data (TF 2.21, three seeds, exact metrics, threshold 0.5).
BARS = {"baseline": {"auc": 0.98, "prc": 0.85},
        "class_weight": {"auc": 0.95, "prc": 0.70, "recall": 0.84},
        "oversample": {"auc": 0.975, "prc": 0.75, "recall": 0.90}}
KEYS = ("auc", "prc", "recall", "precision", "fp", "fn", "loss", "brier")
# Every contender's figures in the comparison: exact test AP and ROC-AUC, and test recall and
# precision at the threshold chosen on validation for --target_recall.
POINT_KEYS = ("ap", "roc_auc", "recall_at_fpr_0.01", "recall_at_t", "precision_at_t")
PEERS = ("xgboost", "lightgbm")
# Peers: boosting rounds at most, learning rate, and rounds without a better validation
# average precision before stopping (the best round's model is the one scored).
MAX_ROUNDS, LEARNING_RATE, EARLY_STOPPING_ROUNDS = 2000, 0.02, 100
# The split every contender uses: {} (main.py's stratified random split) or, with --time_split,
# the time-ordered one ({"split": "time", "time_column": ...}), set once in main().
SPLIT = {}


def point_metrics(auc: float, ap: float, threshold_entry: dict, recall_at_fpr: dict) -> dict:
  """One contender's comparison figures from its exact test AUCs and a threshold entry shaped
  like results.json's "threshold" ({"value", "validation": confusion, "test": confusion}), so
  the engine's results.json and the other contenders' `operating_point` read the same way."""
  test = threshold_entry["test"]
  return {"ap": ap, "roc_auc": auc, "recall_at_fpr_0.01": recall_at_fpr["0.01"],
          "recall_at_t": test["recall"],
          "precision_at_t": test["precision"], "threshold": threshold_entry["value"],
          "validation_recall": threshold_entry["validation"]["recall"]}


def operating_point(y_val, p_val, y_test, p_test, target_recall: float) -> dict:
  """`point_metrics` of scores from outside the engine, through the engine's own code:
  engine.threshold.choose (for_recall on validation, confusion on validation and test) and
  sklearn's exact ROC-AUC and average precision on test. Runs in a worker process."""
  from sklearn import metrics as skm

  from engine import evaluation, threshold
  from engine.config import Config

  entry = threshold.choose(Config(target_recall=target_recall), val_labels=y_val,
                           val_probabilities=p_val, test_labels=y_test,
                           test_probabilities=p_test)
  return point_metrics(float(skm.roc_auc_score(y_test, p_test)),
                       float(skm.average_precision_score(y_test, p_test)), entry,
                       evaluation.recall_at_fpr(y_test, p_test))


def engine_splits(data_path: str | None, seed: int, **config):
  """The engine's own split and scaled features for `seed`, as main.py builds them."""
  from engine.config import Config
  from input_pipeline import preprocessing, sources

  config = Config(seed=seed, data_path=data_path, **SPLIT, **config)
  return preprocessing.prepare(sources.load_frame(config)[0], config)


def run_one(name: str, flags: list[str], seed: int, args, workdir: str) -> dict:
  """main.py with `flags` (e.g. --strategy=S) for `seed`, in a fresh process; its results."""
  model_dir = os.path.join(workdir, f"{name}-{seed}")
  # --target_recall comes after the extra flags so it is the one main.py keeps.
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), *flags,
         f"--seed={seed}", f"--model_dir={model_dir}", "--fresh"] + args.extra + [
         f"--target_recall={args.target_recall}"]
  if args.data_path:
    cmd.append(f"--data_path={args.data_path}")
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode != 0:
    raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  with open(os.path.join(model_dir, "results.json")) as f:
    results = json.load(f)
  results["wall_seconds"] = wall
  th = results["threshold"]
  if th.get("target_recall") is None or abs(th["target_recall"] - args.target_recall) > 1e-12:
    # Only the engine has its scores; results.json keeps the chosen threshold, not the scores.
    raise SystemExit(f"{model_dir}/results.json chose its threshold by {th} rather than for "
                     f"target recall {args.target_recall}: drop --fp_cost/--fn_cost")
  results["point"] = point_metrics(results["test"]["auc"], results["test"]["prc"], th,
                                   results["test"]["recall_at_fpr"])
  return results


def keras_recipe(data_path: str | None, strategy: str, seed: int, target_recall: float) -> dict:
  """The tutorial's recipe on the engine's split for `seed` (runs in its own process)."""
  import keras
  import numpy as np
  import tensorflow as tf
  from sklearn import metrics as skm

  keras.utils.set_random_seed(seed)
  splits = engine_splits(data_path, seed, strategy=strategy)
  neg, pos = np.bincount(splits.y_train)

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import keras_recipe

  def make_model(bias):
    return keras_recipe.make_model(splits.num_features, bias,
                                   metrics=[keras.metrics.AUC(name="prc", curve="PR")])

  stop = keras.callbacks.EarlyStopping(monitor="val_prc", patience=10, mode="max",
                                       restore_best_weights=True)
  if strategy == "oversample":
    model = make_model(0.0)

    train = keras_recipe.resampled_dataset(splits.x_train, splits.y_train)
    val = tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val)).batch(2048).prefetch(2)
    history = model.fit(train, steps_per_epoch=20, epochs=1000, callbacks=[stop],
                        validation_data=val, verbose=0)
  else:
    model = make_model(float(np.log(pos / neg)))
    weights = ({0: (pos + neg) / (2 * neg), 1: (pos + neg) / (2 * pos)}
               if strategy == "class_weight" else None)
    history = model.fit(splits.x_train, splits.y_train, batch_size=2048, epochs=100,
                        callbacks=[stop], validation_data=(splits.x_val, splits.y_val),
                        class_weight=weights, verbose=0)
  p = model.predict(splits.x_test, batch_size=8192, verbose=0).ravel()
  p_val = model.predict(splits.x_val, batch_size=8192, verbose=0).ravel()
  y = splits.y_test
  tp = int(((p >= 0.5) & (y == 1)).sum())
  fp = int(((p >= 0.5) & (y == 0)).sum())
  return {"auc": float(skm.roc_auc_score(y, p)), "prc": float(skm.average_precision_score(y, p)),
          "recall": tp / int(y.sum()), "precision": tp / max(1, tp + fp), "fp": fp,
          "fn": int(y.sum()) - tp, "epochs_run": len(history.history["loss"]),
          "point": operating_point(splits.y_val, p_val, y, p, target_recall)}


def peers(data_path: str | None, seed: int, target_recall: float) -> dict:
  """XGBoost and LightGBM on the engine's split for `seed` (runs in its own process).

  Both early-stop on the validation split's average precision (the metric the comparison leads
  with) and are scored with their best round. Features are the engine's scaled ones: trees do
  not need the scaling, but the clip at +-5 standard deviations is part of what the engine
  sees, so the peers see it too.
  """
  import lightgbm
  import xgboost

  splits = engine_splits(data_path, seed)
  fit = {"eval_set": [(splits.x_val, splits.y_val)]}
  models = {
      "xgboost": (xgboost.XGBClassifier(
          n_estimators=MAX_ROUNDS, learning_rate=LEARNING_RATE, max_depth=6,
          tree_method="hist", eval_metric="aucpr", early_stopping_rounds=EARLY_STOPPING_ROUNDS,
          n_jobs=os.cpu_count(), random_state=seed), dict(fit, verbose=False)),
      # Depth 6 as XGBoost's (63 leaves: what a depth-6 tree can hold, less one). metric=
      # replaces the objective's default (logloss), so early stopping watches AP alone.
      "lightgbm": (lightgbm.LGBMClassifier(
          n_estimators=MAX_ROUNDS, learning_rate=LEARNING_RATE, max_depth=6, num_leaves=63,
          metric="average_precision", n_jobs=os.cpu_count(), random_state=seed, verbose=-1),
          dict(fit, callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])),
  }
  out = {}
  for name, (model, fit_kwargs) in models.items():
    t0 = time.perf_counter()
    model.fit(splits.x_train, splits.y_train, **fit_kwargs)
    train_seconds = time.perf_counter() - t0
    # predict_proba uses the best round of both libraries once early stopping has run.
    p_val, p_test = (model.predict_proba(x)[:, 1] for x in (splits.x_val, splits.x_test))
    rounds = (model.best_iteration + 1 if name == "xgboost"  # 0-based index of the best round
              else model.best_iteration_)  # LightGBM: already a count
    out[name] = {"point": operating_point(splits.y_val, p_val, splits.y_test, p_test,
                                          target_recall),
                 "rounds": int(rounds), "train_seconds": train_seconds}
  return out


def run_worker(what: str, spec: str, args) -> dict:
  """Runs this file with `--<what>_worker=<spec>` and returns the JSON its last line prints:
  TensorFlow, XGBoost and LightGBM load (and hold their threads and memory) in that child only,
  never in the process that launches and times main.py."""
  cmd = [sys.executable, os.path.abspath(__file__), f"--{what}_worker={spec}",
         f"--target_recall={args.target_recall}"]
  if args.time_split:
    cmd.append(f"--time_split={args.time_split}")
  if args.data_path:
    cmd.append(f"--data_path={args.data_path}")
  proc = subprocess.run(cmd, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  if proc.returncode != 0:
    raise SystemExit(f"{what} worker {spec} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_point(pt: dict) -> str:
  """One line of comparison figures; a mean has no single threshold to show."""
  t = f"t={pt['threshold']:.4g}" if "threshold" in pt else "t"
  return (f"AP {pt['ap']:.4f} ROC-AUC {pt['roc_auc']:.4f} "
          f"recall@FPR1% {pt['recall_at_fpr_0.01']:.4f} | at {t}: "
          f"recall {pt['recall_at_t']:.4f} precision {pt['precision_at_t']:.4f}")


def mean_of(points: list[dict]) -> dict:
  return {k: sum(p[k] for p in points) / len(points) for k in POINT_KEYS}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", default=None)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--strategies", default="baseline,class_weight,oversample",
                 help="comma-separated main.py strategies; empty: no engine runs")
  p.add_argument("--config", action="append", default=[], metavar="NAME=FLAGS",
                 help="an engine configuration to run besides the strategies' defaults, e.g. "
                      "'ensemble8=--strategy=baseline --ensemble=8' (repeatable)")
  p.add_argument("--target_recall", type=float, default=0.85,
                 help="choose each contender's threshold on validation for this recall")
  p.add_argument("--json", default=None, help="write all runs and means here")
  p.add_argument("--workdir", default=None, help="model directories (default: a temp dir)")
  p.add_argument("--keras", action="store_true",
                 help="also run the tutorial's Keras recipe on the same split, per seed")
  p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                 help="also train XGBoost and LightGBM on the same split, per seed")
  p.add_argument("--keras_worker", default=None, help=argparse.SUPPRESS)
  p.add_argument("--peers_worker", default=None, help=argparse.SUPPRESS)
  p.add_argument("--time_split", default=None, metavar="COLUMN",
                 help="every contender trains on the past and is tested on the future: "
                      "main.py's --split=time --time_column=COLUMN")
  p.add_argument("extra", nargs="*", help="more main.py flags, after --")
  args = p.parse_args()
  if args.time_split:
    SPLIT.update(split="time", time_column=args.time_split)
    args.extra = args.extra + ["--split=time", f"--time_column={args.time_split}"]
  if args.keras_worker:
    strategy, seed = args.keras_worker.split(":")
    print(json.dumps(keras_recipe(args.data_path, strategy, int(seed), args.target_recall)))
    return
  if args.peers_worker:
    print(json.dumps(peers(args.data_path, int(args.peers_worker), args.target_recall)))
    return
  if not 0.0 < args.target_recall <= 1.0:
    p.error(f"--target_recall={args.target_recall} must be in (0, 1]")
  workdir = args.workdir or tempfile.mkdtemp(prefix="quality-")
  seeds = [int(s) for s in args.seeds.split(",")]
  # Contenders: each strategy with default flags, then each --config.
  contenders = {s: [f"--strategy={s}"] for s in args.strategies.split(",") if s}
  for spec in args.config:
    name, _, flags = spec.partition("=")
    contenders[name] = flags.split()
  # Mean comparison figures per contender, in the order they ran: the final table.
  table = {}
  report = {"target_recall": args.target_recall, "seeds": seeds, "strategies": {}, "peers": {}}
  for strategy, flags in contenders.items():
    runs = []
    for seed in seeds:
      r = run_one(strategy, flags, seed, args, workdir)
      t = r["test"]
      print(f"{strategy:<13} seed {seed}: " + " ".join(f"{k} {t[k]:.4f}" for k in KEYS) +
            f" | epochs {r['epochs_run']} best {r['best_epoch']} | train {r['train_seconds']:.1f}s"
            f" wall {r['wall_seconds']:.1f}s", flush=True)
      print(f"{'':<13} seed {seed}: {fmt_point(r['point'])}", flush=True)
      runs.append(r)
      if args.keras and strategy in BARS:
        k = run_worker("keras", f"{strategy}:{seed}", args)
        r["keras_recipe"] = k
        print(f"{'  keras recipe':<13} seed {seed}: " +
              " ".join(f"{key} {k[key]:.4f}" for key in KEYS) + f" | epochs {k['epochs_run']}",
              flush=True)
        print(f"{'':<13} seed {seed}: {fmt_point(k['point'])}", flush=True)
    mean = {k: sum(r["test"][k] for r in runs) / len(runs) for k in KEYS}
    mean["wall_seconds"] = sum(r["wall_seconds"] for r in runs) / len(runs)
    bar = BARS.get(strategy, {})
    verdict = all(mean[k] >= v for k, v in bar.items())
    print(f"{strategy:<13} MEAN  : " + " ".join(f"{k} {mean[k]:.4f}" for k in KEYS) +
          f" | bar {bar} -> {'MEETS' if verdict else 'BELOW'}", flush=True)
    point_mean = table[strategy] = mean_of([r["point"] for r in runs])
    print(f"{strategy:<13} MEAN  : {fmt_point(point_mean)}",
          flush=True)
    keras_mean = keras_point_mean = None
    if args.keras and strategy in BARS:
      keras_mean = {k: sum(r["keras_recipe"][k] for r in runs) / len(runs) for k in KEYS}
      keras_point_mean = table[f"keras recipe ({strategy})"] = mean_of(
          [r["keras_recipe"]["point"] for r in runs])
      print(f"{'  keras recipe':<13} MEAN  : " +
            " ".join(f"{k} {keras_mean[k]:.4f}" for k in KEYS), flush=True)
      print(f"{'  keras recipe':<13} MEAN  : "
            f"{fmt_point(keras_point_mean)}", flush=True)
    report["strategies"][strategy] = {
        "flags": flags,
        "runs": [{"seed": s, "test": r["test"], "point": r["point"], "members": r.get("members"),
                  "validation": r["validation"],
                  "threshold": r["threshold"], "epochs_run": r["epochs_run"],
                  "best_epoch": r["best_epoch"], "train_seconds": r["train_seconds"],
                  "wall_seconds": r["wall_seconds"]}
                 for s, r in zip(seeds, runs)],
        "mean": mean, "point_mean": point_mean, "bar": bar, "meets_bar": verdict,
        "keras_recipe_mean": keras_mean, "keras_recipe_point_mean": keras_point_mean,
        "keras_recipe_runs": [r.get("keras_recipe") for r in runs]}
  if args.peers:
    peer_runs = {name: [] for name in PEERS}
    for seed in seeds:
      for name, r in run_worker("peers", str(seed), args).items():
        print(f"{name:<13} seed {seed}: {fmt_point(r['point'])} | rounds {r['rounds']} "
              f"train {r['train_seconds']:.1f}s", flush=True)
        peer_runs[name].append(dict(r, seed=seed))
    for name, runs in peer_runs.items():
      table[name] = mean_of([r["point"] for r in runs])
      print(f"{name:<13} MEAN  : {fmt_point(table[name])}",
            flush=True)
      report["peers"][name] = {"runs": runs, "point_mean": table[name]}
  report["comparison"] = [dict(contender=name, **m) for name, m in table.items()]
  print(f"\nMeans over seeds {args.seeds}; t = the threshold chosen on validation for recall >= "
        f"{args.target_recall}:\n")
  print("| contender | test AP | ROC-AUC | recall at 1% FPR | recall@t | precision@t |\n"
        "|---|---|---|---|---|---|")
  for name, m in table.items():
    print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in POINT_KEYS) + " |")
  means = {name: r["mean"] for name, r in report["strategies"].items()}
  if "baseline" in means:
    # The quality issue's calibration bar: each strategy's exported scores no worse than 1.2x
    # the baseline's test log loss.
    print("\nmean test log loss over the baseline's (bar <= 1.2): " + ", ".join(
        f"{name} {m['loss'] / means['baseline']['loss']:.3f}" for name, m in means.items()
        if name != "baseline"))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()
