"""Batch scoring at two file sizes: peak RSS and rows/s of `--mode=predict` and `--mode=evaluate`.

  python benchmarks/predict_memory.py --json=predict_memory.json
  python benchmarks/predict_memory.py --export_dir=runs/oversample/export --workdir=bench

Builds, in --workdir (default: a temporary directory), the credit-card CSV once (1x, 284,807
rows; from --data_path, default the verified cache) and ten times over (10x, 2,848,070 rows),
takes --export_dir or trains a small one on the 1x file, then runs one `main.py` process at a
time (so they do not compete for the cores): predict on 1x and 10x, evaluate on 1x and 10x.
Peak RSS is each whole process's maximum resident set (`wait4` rusage: nothing samples too
late); rows/s is rows over the process's wall time, TensorFlow's import included. The 10x
evaluate's metrics are checked against the same metrics computed in memory (the 1x scores,
ten times over), exactly.

Bars (issue 25): 10x predict peak <= 1.5 GB and within 200 MB of 1x; rows/s >= ~230k;
10x evaluate peak <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.throughput_prepared import main_py, run  # noqa: E402 - one process timer for both
ROWS_1X = 284_807


def build_files(source: str, workdir: str) -> dict[str, str]:
  """The 1x CSV (a copy of `source`, inflated if gzip) and the 10x one (its rows ten times)."""
  one, ten = os.path.join(workdir, "creditcard-1x.csv"), os.path.join(workdir, "creditcard-10x.csv")
  opener = gzip.open if source.endswith(".gz") else open
  with opener(source, "rb") as src, open(one, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
  with open(one, "rb") as f:
    header, body = f.readline(), f.read()
  with open(ten, "wb") as f:
    f.write(header)
    for _ in range(10):
      f.write(body)
  return {"1x": one, "10x": ten}


def in_memory_metrics(export_dir: str, path: str, copies: int) -> dict:
  """Exact metrics of the export on `copies` copies of the rows of `path`, all in memory."""
  import numpy as np
  from engine import evaluation
  from engine.export import ExportedModel
  from input_pipeline import columns, readers
  model = ExportedModel(export_dir)
  frame = readers.open_table(path).read(numeric=model.numeric_columns)
  labels = columns.parse_labels(frame["Class"], "Class")
  probabilities, _ = model.score(frame)
  return evaluation.exact_metrics(np.tile(labels, copies), np.tile(probabilities, copies))


def parse_args():
  from input_pipeline import sources
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_path", default=sources.cached_creditcard_path(),
                 help="the credit-card CSV (or CSV.gz)")
  p.add_argument("--export_dir", default=None, help="an export; default: train a small one")
  p.add_argument("--workdir", default=None, help="default: a temporary directory, removed")
  p.add_argument("--json", default=None, help="write the figures here too")
  return p.parse_args()


def measure(args, workdir: str) -> dict:
  files = build_files(args.data_path, workdir)
  export_dir = args.export_dir
  if not export_dir:
    model_dir = os.path.join(workdir, "run")
    run(main_py(f"--data_path={files['1x']}", f"--model_dir={model_dir}", "--epochs=2",
                "--steps_per_epoch=20"), os.path.join(workdir, "train.log"))
    export_dir = os.path.join(model_dir, "export")
  out = {"machine": f"{platform.node()}, {os.cpu_count()} cores", "export_dir": export_dir,
         "date": time.strftime("%Y-%m-%d %H:%M")}
  for size, copies in (("1x", 1), ("10x", 10)):
    rows = ROWS_1X * copies
    for mode in ("predict", "evaluate"):
      target = os.path.join(workdir, f"{mode}-{size}" + (".csv" if mode == "predict" else ".json"))
      figures = run(main_py(f"--mode={mode}", f"--export_dir={export_dir}",
                            f"--data_path={files[size]}", f"--output={target}"),
                    os.path.join(workdir, f"{mode}-{size}.log"))
      figures["rows_per_second"] = round(rows / figures["wall_seconds"])
      out[f"{mode}_{size}"] = figures
      print(f"{mode:8s} {size:3s}: {figures}", flush=True)
  with open(os.path.join(workdir, "evaluate-10x.json")) as f:
    streamed = json.load(f)["at_0.5"]
  out["evaluate_10x_equals_in_memory"] = streamed == json.loads(json.dumps(
      in_memory_metrics(export_dir, files["1x"], 10)))
  p, e = out["predict_10x"], out["evaluate_10x"]
  out["bars"] = {
      "predict_10x_peak_le_1500mb": p["peak_rss_mb"] <= 1500,
      "predict_10x_within_200mb_of_1x": p["peak_rss_mb"] - out["predict_1x"]["peak_rss_mb"] <= 200,
      "predict_10x_rows_per_second_ge_230k": p["rows_per_second"] >= 230_000,
      "evaluate_10x_peak_le_1500mb": e["peak_rss_mb"] <= 1500,
      "evaluate_10x_exact_metrics": out["evaluate_10x_equals_in_memory"]}
  return out


def main() -> None:
  args = parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="predict-memory-")
  os.makedirs(workdir, exist_ok=True)
  try:
    out = measure(args, workdir)
  finally:
    if not args.workdir:
      shutil.rmtree(workdir, ignore_errors=True)
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
