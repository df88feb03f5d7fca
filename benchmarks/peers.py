"""The gradient-boosted-tree peers of the quality benchmark, fitted on the engine's split.

  python benchmarks/peers.py --table=TABLE.json --seed=0 --peers=xgboost,lightgbm,catboost \
      --output=scores.npz      # run by benchmarks/quality.py, one process per table and seed

Each peer sees the engine's rows of each split (benchmarks/tables.py `split`) and the same raw
columns: the numeric ones as the file holds them, gaps as NaN (trees take NaN natively; the
engine's log of the credit-card Amount is monotone, so a tree's splits are the same without
it), the categorical ones through each library's native categorical support with the training
split's levels (a level unseen in training, or a gap, is missing), never the engine's one-hot
encoding, which caps each column at --max_categories levels. When the table has a time column,
the peers also get `input_pipeline.time_features.derive` of it (hour and weekday, sin and cos),
the features the engine derives from its own flag; the time column itself is not a feature, as
it is not for the engine.

Configurations (issue 26): XGBoost 3000 rounds at most, learning rate 0.02, depth 6, subsample
0.8, colsample_bytree 0.8, eval_metric aucpr; LightGBM 31 leaves, the same rounds, rate and
sampling, metric average_precision; CatBoost depth 6, learning rate 0.05, eval_metric PRAUC
(Logloss where PRAUC's best round is the first, a constant model: see `fit`).
Each stops after 200 rounds without a better validation score and is scored with its best
round. They run in this process, apart from the one that launches and times main.py, so their
threads and memory never overlap an engine run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import tables  # noqa: E402

NAMES = ("xgboost", "lightgbm", "catboost")
MAX_ROUNDS, EARLY_STOPPING_ROUNDS = 3000, 200
THREADS = os.cpu_count() or 1


def features(split: tables.Split) -> tuple[pd.DataFrame, list[str]]:
  """The peers' feature frame for every kept row, and its categorical column names."""
  from input_pipeline import time_features
  rows, roles = split.rows, split.roles
  columns = {}
  for j, name in enumerate(roles.numeric):
    if name != "Time":  # The engine's cleaning drops a numeric credit-card Time.
      columns[name] = rows.numeric[:, j]
  categorical = list(roles.categorical)
  train = split.split == 0
  for name, values in zip(categorical, rows.categorical):
    levels = sorted(set(values[train]) - {""})
    # Code -1 (missing) for a gap ("" is not a level) and for a level unseen in training.
    columns[name] = pd.Categorical.from_codes(pd.Index(levels).get_indexer(values),
                                              categories=levels)
  if rows.times is not None:
    columns.update(zip(time_features.NAMES, time_features.derive(rows.times).T))
  return pd.DataFrame(columns), categorical


def _xgboost(seed, rounds):
  import xgboost
  return xgboost.XGBClassifier(
      n_estimators=rounds, learning_rate=0.02, max_depth=6, subsample=0.8,
      colsample_bytree=0.8, tree_method="hist", eval_metric="aucpr", enable_categorical=True,
      early_stopping_rounds=EARLY_STOPPING_ROUNDS, n_jobs=THREADS, random_state=seed)


def _lightgbm(seed, rounds):
  import lightgbm
  # subsample_freq=1: LightGBM bags rows only when it is set. metric= replaces the objective's
  # default (logloss), so early stopping watches AP alone.
  return lightgbm.LGBMClassifier(
      n_estimators=rounds, learning_rate=0.02, num_leaves=31, subsample=0.8,
      subsample_freq=1, colsample_bytree=0.8, metric="average_precision", n_jobs=THREADS,
      random_state=seed, verbose=-1)


def _catboost(seed, rounds, metric="PRAUC"):
  import catboost
  return catboost.CatBoostClassifier(
      iterations=rounds, depth=6, learning_rate=0.05, eval_metric=metric,
      od_type="Iter", od_wait=EARLY_STOPPING_ROUNDS, use_best_model=True,
      thread_count=THREADS, random_seed=seed, verbose=False, allow_writing_files=False)


def fit(name: str, x: pd.DataFrame, categorical: list[str], split: tables.Split, *,
        seed: int, max_rounds: int = MAX_ROUNDS) -> dict:
  """Fits peer `name` on the train rows, early-stopped on the validation rows.

  Returns:
    {"validation": scores, "test": scores, "fit_seconds", "rounds"}.
  """
  y = split.rows.labels
  parts = [(x[split.split == s], y[split.split == s]) for s in range(3)]
  (x_train, y_train), (x_val, y_val), (x_test, _) = parts
  if name == "catboost":
    # CatBoost takes categories as strings, the engine's canonical ones ("" for a gap); its
    # own statistics handle a level unseen in training.
    x = x.assign(**dict(zip(categorical, split.rows.categorical)))
    x_train, x_val, x_test = (x[split.split == s] for s in range(3))
  model = {"xgboost": _xgboost, "lightgbm": _lightgbm,
           "catboost": _catboost}[name](seed, max_rounds)
  t0 = time.perf_counter()
  if name == "xgboost":
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
    rounds = model.best_iteration + 1  # 0-based index of the best round
  elif name == "lightgbm":
    import lightgbm
    with warnings.catch_warnings():
      # Newer releases rename eval_set (eval_X, eval_y); older ones know only eval_set.
      warnings.simplefilter("ignore", FutureWarning)
      warnings.simplefilter("ignore", DeprecationWarning)
      model.fit(x_train, y_train, eval_set=[(x_val, y_val)],
                callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])
    rounds = model.best_iteration_  # already a count
  else:
    model.fit(x_train, y_train, eval_set=(x_val, y_val), cat_features=categorical)
    if model.get_best_iteration() == 0:
      # CatBoost's PRAUC of its first round, whose scores are nearly all tied, can exceed every
      # later round's (0.27 against 0.04-0.2 on the merchants table), so early stopping kept a
      # constant model. Such a fit stops on the validation log loss instead.
      model = _catboost(seed, max_rounds, metric="Logloss")
      model.fit(x_train, y_train, eval_set=(x_val, y_val), cat_features=categorical)
    rounds = model.get_best_iteration() + 1
  fit_seconds = time.perf_counter() - t0
  # predict_proba uses the best round in all three libraries once early stopping has run.
  return {"validation": model.predict_proba(x_val)[:, 1], "test": model.predict_proba(x_test)[:, 1],
          "fit_seconds": fit_seconds, "rounds": int(rounds)}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--table", required=True, help="JSON: {name, path, fields}")
  p.add_argument("--seed", type=int, required=True)
  p.add_argument("--peers", default=",".join(NAMES))
  p.add_argument("--max_rounds", type=int, default=MAX_ROUNDS)
  p.add_argument("--output", required=True, help=".npz of each peer's test scores")
  args = p.parse_args()
  with open(args.table) as f:
    spec = json.load(f)
  spec["fields"] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["fields"].items()}
  table = tables.Table(spec["name"], spec["path"], spec["fields"])
  split = tables.split(table, args.seed)
  x, categorical = features(split)
  scores, summary = {"test_positions": split.test_positions()}, {}
  for name in (n for n in args.peers.split(",") if n):
    out = fit(name, x, categorical, split, seed=args.seed, max_rounds=args.max_rounds)
    scores[f"{name}_test"], scores[f"{name}_validation"] = out["test"], out["validation"]
    summary[name] = {"fit_seconds": out["fit_seconds"], "rounds": out["rounds"]}
  np.savez(args.output, **scores)
  print(json.dumps(summary))


if __name__ == "__main__":
  main()
