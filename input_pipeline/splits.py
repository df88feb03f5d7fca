"""Which rows train, validate and test: stratified and seeded, by a hash of the row number (for a
file too large to shuffle), or by time."""

from __future__ import annotations

import numpy as np

from input_pipeline import columns as columns_lib
from input_pipeline.errors import DataError
from input_pipeline.hashing import splitmix64


def _check_split_sizes(n: int, cls, validation_fraction: float, test_fraction: float):
  n_test = int(round(n * test_fraction))
  n_val = int(round(n * validation_fraction))
  if min(n_test, n_val, n - n_test - n_val) < 1:
    raise DataError(f"class {cls} has {n} row(s): too few to stratify into train/validation/"
                    f"test splits of {1 - validation_fraction - test_fraction:.0%}/"
                    f"{validation_fraction:.0%}/{test_fraction:.0%}")
  return n_test, n_val


def stratified_split(labels: np.ndarray, *, validation_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Row indices of train, validation and test, each holding every class in proportion.

  Raises:
    DataError: if a class has too few rows to put at least one in every split.
  """
  rng = np.random.default_rng(seed)
  parts = ([], [], [])
  for cls in (0, 1):
    idx = np.flatnonzero(labels == cls)
    rng.shuffle(idx)
    n_test, n_val = _check_split_sizes(len(idx), cls, validation_fraction, test_fraction)
    parts[0].append(idx[n_test + n_val:])
    parts[1].append(idx[n_test:n_test + n_val])
    parts[2].append(idx[:n_test])
  # Sorted, so each split keeps the file's order; datasets shuffle on their own.
  return tuple(np.sort(np.concatenate(p)) for p in parts)


# --mode=prepare's random split: a file too large to shuffle is split row by row (prepare.py's
# docstring says what that costs in the proportions).
def assign_splits(rows: np.ndarray, *, seed: int, validation_fraction: float,
                  test_fraction: float) -> np.ndarray:
  """Split of each row (0 train, 1 validation, 2 test), from its row number in the file.

  Args:
    rows: row numbers (0-based, data rows of the file).
    seed: the run seed; another seed gives another split.
    validation_fraction: probability that a row goes to validation.
    test_fraction: probability that a row goes to test.

  Returns:
    int8 array like `rows`.
  """
  keys = np.asarray(rows, np.uint64) ^ splitmix64(np.full(1, seed, np.uint64))
  u = (splitmix64(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # [0, 1)
  out = np.zeros(len(keys), np.int8)
  out[u < test_fraction + validation_fraction] = 1
  out[u < test_fraction] = 2
  return out


def time_split(times: np.ndarray, labels: np.ndarray, *, validation_fraction: float,
               test_fraction: float) -> np.ndarray:
  """The split of each row (0 train, 1 validation, 2 test) by time: the last test_fraction of
  the rows in time order is test, the validation_fraction before them validation.

  Each cut moves to the next change of timestamp, so no timestamp is in two splits (rows of
  one instant, a day say, are one period: test must not share it with validation), and the
  later split is smaller by the rows of that instant. Every split must hold both classes: a
  model cannot be chosen, or judged, on a period without a fraud.

  Raises:
    DataError: a split without both classes.
  """
  n = len(times)
  order = np.argsort(times, kind="stable")
  ordered = np.asarray(times)[order]
  n_test = int(round(n * test_fraction))
  n_val = int(round(n * validation_fraction))

  def next_change(k: int) -> int:  # The first position >= k whose time differs from k-1's.
    return k if k <= 0 or k >= n else int(np.searchsorted(ordered, ordered[k - 1], "right"))

  split = np.zeros(n, np.int8)
  split[order[next_change(n - n_test - n_val):]] = 1
  split[order[next_change(n - n_test):]] = 2
  for s, name in enumerate(("train", "validation", "test")):
    held = labels[split == s]
    if len(held) == 0 or held.min() == held.max():
      raise DataError(f"the {name} split of the time-ordered split (--split=time) holds "
                      f"{len(held)} row(s) and {int(held.sum())} positive(s): it needs both "
                      "classes; change --validation_fraction/--test_fraction or use "
                      "--split=random")
  return split


def split_rows(rows: columns_lib.Rows, config) -> np.ndarray:
  """The split (0 train, 1 validation, 2 test) of each of these rows, as the config says."""
  if config.split == "time":
    return time_split(rows.times, rows.labels, validation_fraction=config.validation_fraction,
                      test_fraction=config.test_fraction)
  split = np.zeros(len(rows.labels), np.int8)
  _, val, test = stratified_split(rows.labels, validation_fraction=config.validation_fraction,
                                  test_fraction=config.test_fraction, seed=config.seed)
  split[val], split[test] = 1, 2
  return split
