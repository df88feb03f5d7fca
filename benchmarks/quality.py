"""Model quality per strategy, averaged over seeds: runs `main.py` as a user would.

  python benchmarks/quality.py --data_path=creditcard.csv.gz --seeds=0,1,2 \
      --strategies=baseline,class_weight,oversample --keras --json=quality.json

Each run is a separate `main.py` process with default flags (plus --seed, --data_path and any
--extra flags), in its own model directory. Prints the test metrics of every run and the mean
per strategy, with the quality bar of the engine issue beside it.

With --keras, each seed also runs the TensorFlow tutorial's Keras recipe (`model.fit`, the
tutorial's model, losses, class weights, element-wise `sample_from_datasets` and early stopping)
on exactly the engine's split and preprocessing for that seed, so the two are compared on the
same test rows: with ~98 test frauds, the split alone moves PR-AUC by several points.
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
# The tutorial's own Keras recipe on this data (TF 2.21, three seeds, exact metrics, threshold 0.5).
BARS = {"baseline": {"auc": 0.98, "prc": 0.85},
        "class_weight": {"auc": 0.95, "prc": 0.70, "recall": 0.84},
        "oversample": {"auc": 0.975, "prc": 0.75, "recall": 0.90}}
KEYS = ("auc", "prc", "recall", "precision", "fp", "fn")


def run_one(strategy: str, seed: int, args, workdir: str) -> dict:
  model_dir = os.path.join(workdir, f"{strategy}-{seed}")
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--strategy={strategy}",
         f"--seed={seed}", f"--model_dir={model_dir}", "--fresh"] + args.extra
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
  return results


def keras_recipe(data_path: str | None, strategy: str, seed: int) -> dict:
  """The tutorial's recipe on the engine's split for `seed` (runs in its own process)."""
  sys.path.insert(0, ROOT)
  import keras
  import numpy as np
  import tensorflow as tf
  from sklearn import metrics as skm

  from engine.config import Config
  from input_pipeline import preprocessing, sources

  keras.utils.set_random_seed(seed)
  config = Config(seed=seed, strategy=strategy, data_path=data_path)
  splits = preprocessing.prepare(sources.load_frame(config)[0], config)
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
  y = splits.y_test
  tp = int(((p >= 0.5) & (y == 1)).sum())
  fp = int(((p >= 0.5) & (y == 0)).sum())
  return {"auc": float(skm.roc_auc_score(y, p)), "prc": float(skm.average_precision_score(y, p)),
          "recall": tp / int(y.sum()), "precision": tp / max(1, tp + fp), "fp": fp,
          "fn": int(y.sum()) - tp, "epochs_run": len(history.history["loss"])}


def run_keras(strategy: str, seed: int, args) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--keras_worker", f"{strategy}:{seed}"]
  if args.data_path:
    cmd.append(f"--data_path={args.data_path}")
  proc = subprocess.run(cmd, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  if proc.returncode != 0:
    raise SystemExit(f"Keras recipe {strategy} seed {seed} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", default=None)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--strategies", default="baseline,class_weight,oversample")
  p.add_argument("--json", default=None, help="write all runs and means here")
  p.add_argument("--workdir", default=None, help="model directories (default: a temp dir)")
  p.add_argument("--keras", action="store_true",
                 help="also run the tutorial's Keras recipe on the same split, per seed")
  p.add_argument("--keras_worker", default=None, help=argparse.SUPPRESS)
  p.add_argument("extra", nargs="*", help="more main.py flags, after --")
  args = p.parse_args()
  if args.keras_worker:
    strategy, seed = args.keras_worker.split(":")
    print(json.dumps(keras_recipe(args.data_path, strategy, int(seed))))
    return
  workdir = args.workdir or tempfile.mkdtemp(prefix="quality-")
  seeds = [int(s) for s in args.seeds.split(",")]
  report = {}
  for strategy in args.strategies.split(","):
    runs = []
    for seed in seeds:
      r = run_one(strategy, seed, args, workdir)
      t = r["test"]
      print(f"{strategy:<13} seed {seed}: " + " ".join(f"{k} {t[k]:.4f}" for k in KEYS) +
            f" | epochs {r['epochs_run']} best {r['best_epoch']} | train {r['train_seconds']:.1f}s"
            f" wall {r['wall_seconds']:.1f}s", flush=True)
      runs.append(r)
      if args.keras:
        k = run_keras(strategy, seed, args)
        r["keras_recipe"] = k
        print(f"{'  keras recipe':<13} seed {seed}: " +
              " ".join(f"{key} {k[key]:.4f}" for key in KEYS) + f" | epochs {k['epochs_run']}",
              flush=True)
    mean = {k: sum(r["test"][k] for r in runs) / len(runs) for k in KEYS}
    mean["wall_seconds"] = sum(r["wall_seconds"] for r in runs) / len(runs)
    bar = BARS.get(strategy, {})
    verdict = all(mean[k] >= v for k, v in bar.items())
    print(f"{strategy:<13} MEAN  : " + " ".join(f"{k} {mean[k]:.4f}" for k in KEYS) +
          f" | bar {bar} -> {'MEETS' if verdict else 'BELOW'}", flush=True)
    keras_mean = None
    if args.keras:
      keras_mean = {k: sum(r["keras_recipe"][k] for r in runs) / len(runs) for k in KEYS}
      print(f"{'  keras recipe':<13} MEAN  : " +
            " ".join(f"{k} {keras_mean[k]:.4f}" for k in KEYS), flush=True)
    report[strategy] = {"runs": [{"seed": s, "test": r["test"], "epochs_run": r["epochs_run"],
                                  "best_epoch": r["best_epoch"],
                                  "train_seconds": r["train_seconds"],
                                  "wall_seconds": r["wall_seconds"]}
                                 for s, r in zip(seeds, runs)],
                        "mean": mean, "bar": bar, "meets_bar": verdict,
                        "keras_recipe_mean": keras_mean,
                        "keras_recipe_runs": [r.get("keras_recipe") for r in runs]}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()
