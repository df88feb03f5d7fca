"""The file-based path against the in-memory path, in one run: examples/s and peak RSS.

  python benchmarks/make_synthetic.py --rows=5696140 --output=big.csv    # 20x credit card
  python benchmarks/throughput_prepared.py --data_path=big.csv --workdir=bench \
      --json=bench/throughput_prepared.json

Three `main.py` processes, one after the other (so they do not compete for the cores):
  1. `--mode=prepare` of --data_path into TFRecord shards;
  2. training from those shards (`--prepared_dir`);
  3. training from the CSV in memory (`--data_path`), the reference (skip with --no_inmemory).
Both trainings use the same flags (--strategy, --batch_size, --epochs x --steps_per_epoch, and
--extra flags after `--`). Training examples/s is the median of the per-epoch figures the loop
logs, without the first epoch (tracing, and the shuffle buffers filling). Peak RSS is each
process's own maximum resident set (`wait4` rusage), so nothing samples too late.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def examples_per_second_by_epoch(model_dir: str) -> list[float]:
  """The training examples/s of each epoch, as the run wrote them to TensorBoard."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  from tensorboard.util import tensor_util
  acc = EventAccumulator(os.path.join(model_dir, "logs", "train"), size_guidance={"tensors": 0})
  acc.Reload()
  events = sorted(acc.Tensors("examples_per_second"), key=lambda e: e.step)
  return [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events]


def main_py(*flags: str) -> list[str]:
  """The command line of this checkout's main.py with `flags`, in this interpreter: the MLP
  (the figures these benchmarks compare are the pipeline's), unless `flags` name a model."""
  return [sys.executable, os.path.join(ROOT, "main.py"), "--model=mlp", *flags]


def run(cmd: list[str], log_path: str) -> dict:
  """Runs cmd; returns wall seconds, peak RSS (MB) and the exit code. Output goes to log_path."""
  with open(log_path, "w") as log:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
  # ru_maxrss is in kilobytes on Linux.
  return {"wall_seconds": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def train(name: str, data_flags: list[str], args) -> dict:
  model_dir = os.path.join(args.workdir, f"run-{name}")
  cmd = main_py(*data_flags, f"--model_dir={model_dir}", "--fresh", f"--strategy={args.strategy}",
                f"--batch_size={args.batch_size}", f"--epochs={args.epochs}",
                f"--steps_per_epoch={args.steps_per_epoch}", "--patience=1000", *args.extra)
  log_path = os.path.join(args.workdir, f"train-{name}.log")
  out = run(cmd, log_path)
  per_epoch = examples_per_second_by_epoch(model_dir)
  with open(os.path.join(model_dir, "results.json")) as f:
    results = json.load(f)
  out.update({"examples_per_second": round(statistics.median(per_epoch[1:] or per_epoch)),
              "examples_per_second_by_epoch": [round(v) for v in per_epoch],
              "test_auc": round(results["test"]["auc"], 4),
              "test_prc": round(results["test"]["prc"], 4)})
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", required=True, help="the CSV to prepare (and to read in memory)")
  p.add_argument("--workdir", required=True, help="prepared shards, model dirs and logs")
  p.add_argument("--strategy", default="oversample")
  p.add_argument("--batch_size", type=int, default=2048)
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--steps_per_epoch", type=int, default=100)
  p.add_argument("--no_inmemory", action="store_true", help="skip the in-memory reference")
  p.add_argument("--reuse_prepared", action="store_true",
                 help="train from an existing <workdir>/prepared instead of preparing again")
  p.add_argument("--json", default=None, help="write the report here")
  p.add_argument("extra", nargs="*", help="more main.py flags for both trainings, after --")
  args = p.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  prepared_dir = os.path.join(args.workdir, "prepared")
  report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "data_path": args.data_path,
            "csv_gb": round(os.path.getsize(args.data_path) / 1e9, 2),
            "flags": {k: getattr(args, k) for k in ("strategy", "batch_size", "epochs",
                                                     "steps_per_epoch", "extra")}}
  if not args.reuse_prepared:
    cmd = main_py("--mode=prepare", f"--data_path={args.data_path}",
                  f"--output_dir={prepared_dir}", "--fresh")
    report["prepare"] = run(cmd, os.path.join(args.workdir, "prepare.log"))
  with open(os.path.join(prepared_dir, "metadata.json")) as f:
    counts = json.load(f)["counts"]
  rows = sum(c["rows"] for c in counts.values())
  report["rows"] = rows
  if "prepare" in report:
    report["prepare"]["rows_per_second"] = round(rows / report["prepare"]["wall_seconds"])
  print(json.dumps(report, indent=2), flush=True)
  report["train_prepared"] = train("prepared", [f"--prepared_dir={prepared_dir}"], args)
  print(json.dumps(report["train_prepared"], indent=2), flush=True)
  if not args.no_inmemory:
    report["train_in_memory"] = train("in_memory", [f"--data_path={args.data_path}"], args)
    report["prepared_over_in_memory_examples_per_second"] = round(
        report["train_prepared"]["examples_per_second"] /
        report["train_in_memory"]["examples_per_second"], 3)
  text = json.dumps(report, indent=2)
  print(text)
  if args.json:
    with open(args.json, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
