"""The same rows as CSV, as one Parquet file and as a partitioned Parquet directory: same results.

  python benchmarks/parquet_parity.py --json=parquet_parity.json
  python benchmarks/parquet_parity.py --data_path=creditcard.csv --workdir=bench --seed=0

Writes, in --workdir (default: a temporary directory, removed), the credit-card CSV (from
--data_path, default the verified cache) as `creditcard.parquet` (one file, pyarrow's types
from pandas' reading of the CSV) and as `creditcard-parts/` (four Parquet files of
consecutive rows). Then, one `main.py` process at a time:

- trains `--strategy=oversample` (plus --flags) on the CSV, on the Parquet file and on the
  directory, and compares each Parquet run's results.json test table with the CSV run's,
  field by field, exactly (train_seconds and the paths aside);
- runs `--mode=prepare` on the directory and trains from the prepared directory;
- predicts through the CSV run's export CSV -> CSV, Parquet -> Parquet and directory ->
  Parquet, and compares the probabilities row by row, exactly.

Exits 1 if any comparison differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.throughput_prepared import main_py, run  # noqa: E402 - one process timer for all

PARTS = 4


def write_copies(source: str, workdir: str) -> dict[str, str]:
  """The CSV as given, a Parquet file and a directory of PARTS Parquet files, same rows."""
  import numpy as np
  import pandas as pd
  frame = pd.read_csv(source)
  one = os.path.join(workdir, "creditcard.parquet")
  frame.to_parquet(one, index=False)
  parts = os.path.join(workdir, "creditcard-parts")
  os.makedirs(parts, exist_ok=True)
  for i, rows in enumerate(np.array_split(np.arange(len(frame)), PARTS)):
    frame.iloc[rows].to_parquet(os.path.join(parts, f"part-{i}.parquet"), index=False)
  return {"csv": source, "parquet": one, "directory": parts}


def test_table(model_dir: str) -> dict:
  with open(os.path.join(model_dir, "results.json")) as f:
    results = json.load(f)
  return {k: results[k] for k in ("test", "validation", "epochs_run", "best_epoch")}


def probabilities(path: str):
  import pandas as pd
  frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
  return frame["probability"].to_numpy()


def train_all(args, files: dict, workdir: str) -> dict:
  out, tables = {}, {}
  sources = {**files, "prepared": os.path.join(workdir, "prepared")}
  run(main_py("--mode=prepare", f"--data_path={files['directory']}",
              f"--output_dir={sources['prepared']}", f"--seed={args.seed}"),
      os.path.join(workdir, "prepare.log"))
  for name, path in sources.items():
    model_dir = os.path.join(workdir, f"run-{name}")
    data = f"--prepared_dir={path}" if name == "prepared" else f"--data_path={path}"
    figures = run(main_py("--strategy=oversample", data, f"--model_dir={model_dir}",
                          "--fresh", f"--seed={args.seed}", *args.flags.split()),
                  os.path.join(workdir, f"train-{name}.log"))
    tables[name] = test_table(model_dir)
    out[f"train_{name}"] = {**figures, "test_prc": tables[name]["test"]["prc"],
                            "test_tp": tables[name]["test"]["tp"]}
    # A prepared directory streams from disk in another order: it must train, not match.
    if name not in ("csv", "prepared"):
      out[f"train_{name}_equals_csv"] = tables[name] == tables["csv"]
    print(f"train {name:9s}: {out[f'train_{name}']}", flush=True)
  return out


def predict_all(files: dict, workdir: str) -> dict:
  import numpy as np
  export_dir = os.path.join(workdir, "run-csv", "export")
  out, scores = {}, {}
  for name, path in files.items():
    target = os.path.join(workdir, f"scores-{name}." + ("csv" if name == "csv" else "parquet"))
    out[f"predict_{name}"] = run(main_py("--mode=predict", f"--export_dir={export_dir}",
                                         f"--data_path={path}", f"--output={target}"),
                                 os.path.join(workdir, f"predict-{name}.log"))
    scores[name] = probabilities(target)
    if name != "csv":
      out[f"predict_{name}_equals_csv"] = bool(np.array_equal(scores[name], scores["csv"]))
    print(f"predict {name:9s}: {out[f'predict_{name}']}", flush=True)
  return out


def main() -> None:
  from input_pipeline import sources
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_path", default=sources.cached_creditcard_path(), help="the credit-card CSV")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--flags", default="", help="extra flags for every training run, space-separated")
  p.add_argument("--workdir", default=None, help="default: a temporary directory, removed")
  p.add_argument("--json", default=None, help="write the figures here too")
  args = p.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="parquet-parity-")
  os.makedirs(workdir, exist_ok=True)
  try:
    files = write_copies(args.data_path, workdir)
    out = {"seed": args.seed, "flags": args.flags, **train_all(args, files, workdir),
           **predict_all(files, workdir)}
  finally:
    if not args.workdir:
      shutil.rmtree(workdir, ignore_errors=True)
  out["all_equal"] = all(v for k, v in out.items() if k.endswith("_equals_csv"))
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  sys.exit(0 if out["all_equal"] else 1)


if __name__ == "__main__":
  main()
