"""Writes a credit-card-shaped CSV of any size, chunk by chunk, never holding it all in memory.

  python benchmarks/make_synthetic.py --rows=5696140 --output=big.csv   # 20x the real set

Columns Time, V1..V28, Amount, Class, ~0.17% positives with a learnable signal: each chunk is
`input_pipeline.sources.synthetic_creditcard(rows, seed)` with its own seed, so the file is a
pure function of (--rows, --chunk_rows, --seed). `Time` restarts in each chunk; nothing uses it
as a feature (the preprocessing drops it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipeline.sources import synthetic_creditcard  # noqa: E402


def chunk_seed(seed: int, index: int) -> int:
  # Distinct, reproducible seeds per chunk; a large odd multiplier keeps runs with nearby
  # --seed values from sharing chunks.
  return seed * 1_000_003 + index


def write_csv(path: str, *, rows: int, chunk_rows: int = 250_000, seed: int = 0) -> dict:
  """Writes `rows` synthetic rows to `path`; returns {"rows", "positives", "bytes"}."""
  tmp = path + ".part"
  positives = 0
  written = 0
  with open(tmp, "w", newline="") as f:
    index = 0
    while written < rows:
      n = min(chunk_rows, rows - written)
      frame = synthetic_creditcard(n, chunk_seed(seed, index))
      frame.to_csv(f, header=(index == 0), index=False)
      positives += int(frame["Class"].sum())
      written += n
      index += 1
  # Rename last: an interrupted run never leaves a complete-looking file.
  os.replace(tmp, path)
  return {"rows": written, "positives": positives, "bytes": os.path.getsize(path)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--rows", type=int, required=True)
  p.add_argument("--output", required=True)
  p.add_argument("--chunk_rows", type=int, default=250_000)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  if args.rows < 1 or args.chunk_rows < 1:
    p.error("--rows and --chunk_rows must be positive")
  t0 = time.perf_counter()
  info = write_csv(args.output, rows=args.rows, chunk_rows=args.chunk_rows, seed=args.seed)
  print(f"wrote {args.output}: {info['rows']} rows, {info['positives']} positives, "
        f"{info['bytes'] / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
  main()
