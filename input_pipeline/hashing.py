"""A 64-bit mixer for the hash-based choices of rows (splits, samples, folds): functions of a
row's number in the file, so they do not depend on how the file is read in chunks."""

from __future__ import annotations

import numpy as np


def splitmix64(x: np.ndarray) -> np.ndarray:
  """A bijective 64-bit mixer (Steele et al.): consecutive inputs give unrelated outputs."""
  with np.errstate(over="ignore"):
    x = np.asarray(x, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
