"""Kill a training run with SIGKILL at random points, resume it, compare with an uninterrupted run.

  python benchmarks/kill_resume.py --data_path=creditcard.csv.gz --kills=3 -- --strategy=oversample

Runs `main.py --deterministic --checkpoint_interval_seconds=0` once uninterrupted, then the
same command in another directory, killed with SIGKILL `--kills` times at random moments (after
a random epoch line, plus a random delay, so a kill may land inside a step, an evaluation or a
checkpoint write) and started again each time, until it finishes. Prints both runs' test metrics
and the largest difference. A checkpoint every epoch (not the default every 30 s) makes every
restart resume from the middle of the run, the case under test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCH_LINE = re.compile(r"epoch +(\d+)  train loss")
KEYS = ("loss", "auc", "prc", "tp", "fp", "tn", "fn", "precision", "recall")


def command(args, model_dir):
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), "--model=mlp", "--deterministic",
         "--checkpoint_interval_seconds=0", f"--model_dir={model_dir}"] + args.extra
  if args.data_path:
    cmd.append(f"--data_path={args.data_path}")
  return cmd


def results(model_dir):
  with open(os.path.join(model_dir, "results.json")) as f:
    return json.load(f)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", default=None)
  p.add_argument("--kills", type=int, default=3)
  p.add_argument("--seed", type=int, default=0, help="seeds the kill points")
  p.add_argument("--workdir", default=None)
  p.add_argument("extra", nargs="*", help="more main.py flags, after --")
  args = p.parse_args()
  rng = random.Random(args.seed)
  workdir = args.workdir or tempfile.mkdtemp(prefix="kill-resume-")

  straight = os.path.join(workdir, "uninterrupted")
  subprocess.run(command(args, straight), check=True, capture_output=True)
  reference = results(straight)
  print(f"uninterrupted: {reference['epochs_run']} epochs, {reference['steps']} steps", flush=True)

  killed = os.path.join(workdir, "killed")
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  epochs_seen = 0
  for k in range(args.kills):
    proc = subprocess.Popen(command(args, killed), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    target = epochs_seen + rng.randint(1, max(1, reference["epochs_run"] // (args.kills + 1)))
    last = None
    for line in proc.stdout:
      epoch = EPOCH_LINE.search(line)  # main.py's console: "HH:MM:SS epoch  12  train loss ..."
      if epoch:
        last = int(epoch.group(1))
        if last >= target:
          break
    delay = rng.uniform(0.0, 0.5)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_seen = last or epochs_seen
    print(f"kill {k + 1}: SIGKILL {delay:.2f}s after epoch {last} was logged", flush=True)
  final = subprocess.run(command(args, killed), capture_output=True, text=True)
  if final.returncode != 0:
    raise SystemExit(final.stderr)
  resumed = results(killed)
  worst = max(abs(resumed["test"][k] - reference["test"][k]) for k in KEYS)
  for name, r in (("uninterrupted", reference), ("killed+resumed", resumed)):
    print(f"{name:>15}: " + " ".join(f"{k} {r['test'][k]:.6f}" for k in KEYS) +
          f" | epochs {r['epochs_run']} steps {r['steps']}")
  print(f"largest difference in test metrics: {worst:.3g} -> "
        f"{'EQUAL (<= 1e-6)' if worst <= 1e-6 else 'DIFFERENT'}")


if __name__ == "__main__":
  main()
