"""The splits: by time, each cut at the next change of timestamp, in memory and prepared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.config import Config
from input_pipeline import prepare, preprocessing, splits


@pytest.mark.parametrize("per_day,test_fraction,validation_fraction,expected", [
    (10, 0.25, 0.16, (60, 20, 20)),  # both cuts inside a day: moved to the next day
    (10, 0.20, 0.20, (60, 20, 20)),  # cuts on a change already: unchanged
    (1, 0.25, 0.16, (59, 16, 25)),   # distinct times: the plain row counts
    (10, 0.01, 0.16, None),          # the cut moves past the last day: an empty test split
])
def test_time_cuts_move_to_the_next_change_of_timestamp(per_day, test_fraction,
                                                        validation_fraction, expected):
  n = 100
  times = np.repeat(np.arange(n // per_day, dtype=np.float64), per_day)[::-1].copy()
  labels = (np.arange(n) % 5 == 0).astype(np.int64)
  kw = dict(validation_fraction=validation_fraction, test_fraction=test_fraction)
  if expected is None:
    with pytest.raises(Exception, match="test split .* holds 0 row"):
      splits.time_split(times, labels, **kw)
    return
  split = splits.time_split(times, labels, **kw)
  assert tuple(np.bincount(split, minlength=3)) == expected
  for a in range(3):
    for b in range(a + 1, 3):
      assert not set(times[split == a]) & set(times[split == b])  # no instant in two splits


def test_prepare_cuts_where_the_in_memory_split_cuts(tmp_path):
  n = 100
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({"day": np.repeat(np.arange(10), 10), "x": rng.normal(size=n),
                        "Class": (np.arange(n) % 5 == 0).astype(int)}).sample(frac=1.0,
                                                                              random_state=0)
  path = tmp_path / "days.csv"
  frame.to_csv(path, index=False)
  config = Config(data_path=str(path), split="time", time_column="day", test_fraction=0.25,
                  validation_fraction=0.16, prepare_shards=2, min_category_count=1)
  in_memory = preprocessing.split_and_encode(frame, config).counts()
  prepared = prepare.prepare(config, str(tmp_path / "prepared"))["counts"]
  assert {s: c["rows"] for s, c in prepared.items()} == {"train": 60, "validation": 20,
                                                         "test": 20}
  assert prepared == in_memory
