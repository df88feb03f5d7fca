"""End-to-end wall time of `main.py --strategy=oversample` against the tutorial's Keras recipe.

  python benchmarks/wall_time.py --data_path=creditcard.csv.gz --repeats=2 --json=wall.json
  python benchmarks/wall_time.py --data_path=creditcard.csv.gz --before_root=../old-checkout

With --before_root, an earlier checkout's main.py runs too, interleaved, with the same flags.

Each is run as a user runs it, a fresh process from the first command to its results file
(imports and the CSV read included): `main.py --strategy=oversample --data_path=...` with
default flags, and benchmarks/keras_recipe.py. They run one after the other, never at the same
time, alternating which goes first, so each gets the machine the other had. Prints each run's
wall seconds, peak memory and test metrics, and the ratio of the medians (the engine's bar: at
most 1/5).

Peak memory is the larger of two figures, so neither undercounts: the largest single process
of the run (`wait4`'s ru_maxrss), and the largest total resident set of the run's whole process
tree (main.py reads its data in a child process while TensorFlow imports), sampled from /proc
every 20 ms (a few percent of one core).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree_rss_bytes(pid: int) -> int:
  """Resident bytes of `pid` and all its descendants (Linux /proc), 0 once it is gone."""
  children = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      children.setdefault(ppid, []).append(int(entry))
  total, todo = 0, [pid]
  while todo:
    p = todo.pop()
    todo.extend(children.get(p, []))
    try:
      with open(f"/proc/{p}/statm") as f:
        total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
      pass
  return total


class TreeRss:
  """Samples the peak total RSS of a process tree in a background thread."""

  def __init__(self, pid: int, interval: float = 0.02):
    self.peak = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(pid, interval), daemon=True)
    self._thread.start()

  def _run(self, pid, interval):
    while not self._stop.is_set():
      self.peak = max(self.peak, _tree_rss_bytes(pid))
      self._stop.wait(interval)

  def stop(self) -> int:
    self._stop.set()
    self._thread.join()
    return self.peak
KEYS = ("auc", "prc", "recall", "precision", "tp", "fp", "fn")


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", required=True, help="the credit-card CSV(.gz)")
  p.add_argument("--repeats", type=int, default=1, help="runs of each")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workdir", default=None, help="model directories and logs (default: temp)")
  p.add_argument("--json", default=None)
  p.add_argument("--before_root", default=None,
                 help="a checkout of earlier code: its main.py runs too, as 'engine_before', "
                      "interleaved with this one's, for a before/after comparison in one run")
  p.add_argument("--engine_flags", default="",
                 help="extra flags for both engines' main.py, space-separated")
  args = p.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="wall-time-")
  os.makedirs(workdir, exist_ok=True)
  roots = {"engine": ROOT}
  if args.before_root:
    roots["engine_before"] = os.path.abspath(args.before_root)
  runs = {name: [] for name in (*roots, "keras")}
  for r in range(args.repeats):
    order = list(runs) if r % 2 == 0 else list(runs)[::-1]
    for name in order:
      log = os.path.join(workdir, f"{name}-{r}.log")
      if name in roots:
        model_dir = os.path.join(workdir, f"{name}-{r}")
        out = os.path.join(model_dir, "results.json")
        # The MLP against the Keras tutorial's MLP (before the tabm default, the only family).
        family = ["--model=mlp"] if name == "engine" else []
        cmd = [sys.executable, os.path.join(roots[name], "main.py"), *family,
               "--strategy=oversample", f"--data_path={args.data_path}",
               f"--model_dir={model_dir}", "--fresh", f"--seed={args.seed}",
               *args.engine_flags.split()]
      else:
        out = os.path.join(workdir, f"keras-{r}.json")
        cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "keras_recipe.py"),
               f"--data_path={args.data_path}", f"--json={out}", f"--seed={args.seed}"]
      with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=roots.get(name, ROOT), stdout=f, stderr=subprocess.STDOUT)
        tree = TreeRss(proc.pid)
        # wait4: this child's own peak RSS, not the largest of all children so far.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        tree_peak = tree.stop()
      if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
      with open(out) as f:
        result = json.load(f)
      test = result["test"]
      entry = {"wall_seconds": wall,
               "peak_rss_bytes": max(usage.ru_maxrss * 1024, tree_peak),
               "largest_process_peak_rss_bytes": usage.ru_maxrss * 1024,
               "process_tree_peak_rss_bytes": tree_peak,
               "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"],
               "test": {k: test[k] for k in KEYS}}
      runs[name].append(entry)
      print(f"{name:<13} run {r}: wall {wall:6.1f}s  peak RSS {entry['peak_rss_bytes'] / 2**20:6.0f} "
            f"MiB  epochs {entry['epochs_run']:3d} (best {entry['best_epoch']})  " +
            " ".join(f"{k} {test[k]:.4f}" if isinstance(test[k], float) else f"{k} {test[k]}"
                     for k in KEYS), flush=True)

  def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])

  engine = median([e["wall_seconds"] for e in runs["engine"]])
  keras = median([e["wall_seconds"] for e in runs["keras"]])
  report = {"runs": runs, "engine_wall_seconds": engine, "keras_wall_seconds": keras,
            "ratio_engine_over_keras": engine / keras, "bar": 0.2, "engine_flags": args.engine_flags,
            "machine": {"cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}}
  print(f"\nmedian wall: engine {engine:.1f}s, Keras recipe {keras:.1f}s -> ratio {engine / keras:.3f} "
        f"(bar <= 0.2: {'met' if engine / keras <= 0.2 else 'NOT met'})")
  if args.before_root:
    before = median([e["wall_seconds"] for e in runs["engine_before"]])
    report["engine_before_wall_seconds"] = before
    report["ratio_engine_over_before"] = engine / before
    print(f"median wall: engine before {before:.1f}s -> after/before {engine / before:.3f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()
