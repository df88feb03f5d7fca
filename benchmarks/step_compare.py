"""The training step alone, in this checkout and in others: a before/after probe of the step.

  python benchmarks/step_compare.py --roots=../before,. --repeats=3 --data_path=creditcard.csv

For each root in turn, alternating, `--repeats` times: a fresh process that imports that
checkout's engine and times its compiled training loop on one batch already in memory
(throughput.py's compute bound: the anchor's model, batch 2048, positive share 0.5), with XLA and
without, the median of 7 timed calls of 400 steps after one untimed. Prints examples/s per root
and run, and each root's median over runs. Nothing else runs in those processes, so the figure
is the step's cost, not the benchmark's neighbours'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import os, statistics, sys
root, data_path = sys.argv[1], sys.argv[2]
os.chdir(root)
sys.path[:0] = [root, os.path.join(root, "benchmarks")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import json
import benchmarks.throughput as T
from engine import distribute, loop
from engine.config import Config
data = dict(dataset="creditcard", data_path=data_path) if data_path else dict(dataset="synthetic")
settings = dict(strategy="oversample", seed=0, hidden_units=(16,), dropout=0.5, batch_size=2048,
                learning_rate=1e-3, positive_fraction=0.5, jit_compile="true",
                intra_op_threads=1, **data)
try:  # The MLP in every checkout: one that predates --model knows no other.
  config = Config(model="mlp", **settings)
except Exception:
  config = Config(**settings)
loop.configure_tensorflow(config)
distribute.make_strategy(config)
splits = T.load_splits(config)
out = {}
for jit in ("true", "false"):
  e = T.EngineContenders(config.replace(jit_compile=jit), splits, timed_steps=400)
  e.compute_bound()
  out["xla" if jit == "true" else "plain"] = statistics.median(e.compute_bound() for _ in range(7))
print("RESULT " + json.dumps(out))
"""


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--roots", required=True, help="comma-separated checkouts")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--data_path", default="", help="the credit-card CSV; default synthetic")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  roots = [os.path.abspath(r) for r in args.roots.split(",")]
  runs = {r: [] for r in roots}
  for i in range(args.repeats):
    for root in (roots if i % 2 == 0 else roots[::-1]):
      proc = subprocess.run([sys.executable, "-c", CHILD, root, args.data_path],
                            capture_output=True, text=True, check=False)
      lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
      if proc.returncode != 0 or not lines:
        raise SystemExit(f"{root} failed:\n{proc.stderr[-3000:]}")
      runs[root].append(json.loads(lines[-1][len("RESULT "):]))
      print(f"{root}: " + "  ".join(f"{k} {v:,.0f}" for k, v in runs[root][-1].items()),
            flush=True)
  report = {root: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for root, rs in runs.items()}
  for root, medians in report.items():
    print(f"median {root}: " + "  ".join(f"{k} {v:,.0f}" for k, v in medians.items()))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"runs": runs, "medians": report, "load_average": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
  main()
