import logging
import os

import numpy as np
import pandas as pd
import pytest

from engine.config import Config
from input_pipeline import loading
from input_pipeline.errors import DataError


def _csv(tmp_path, rows=4000, inf_rows=0, bad_label=False):
  rng = np.random.default_rng(0)
  frame = pd.DataFrame(rng.normal(size=(rows, 5)), columns=[f"f{i}" for i in range(5)])
  frame["Class"] = (rng.random(rows) < 0.05).astype(int)
  frame.iloc[:inf_rows, 0] = np.inf
  if bad_label:
    frame.loc[7, "Class"] = 3
  path = tmp_path / "data.csv"
  frame.to_csv(path, index=False)
  return str(path)


def _assert_same(a, b):
  (sa, da), (sb, db) = a, b
  assert da == db
  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name))
  assert sa.preprocessor == sb.preprocessor


def test_background_load_equals_the_in_process_load(tmp_path):
  config = Config(data_path=_csv(tmp_path))
  background = loading.BackgroundLoad(config)
  _assert_same(background.result(), loading.load_splits(config))
  assert not background._process.is_alive()


def test_errors_of_the_child_are_raised_here_with_their_message(tmp_path):
  config = Config(data_path=_csv(tmp_path, bad_label=True))
  with pytest.raises(DataError) as in_process:
    loading.load_splits(config)
  with pytest.raises(DataError) as background:
    loading.BackgroundLoad(config).result()
  assert str(background.value) == str(in_process.value)
  assert "label column 'Class' must hold 0/1" in str(background.value)


def test_the_child_log_lines_are_replayed(tmp_path, caplog):
  config = Config(data_path=_csv(tmp_path, inf_rows=3), drop_invalid_rows=True)
  with caplog.at_level(logging.INFO):
    loading.BackgroundLoad(config).result()
  assert any("Dropping 3 row(s) with invalid features" in r.getMessage()
             for r in caplog.records if r.levelno == logging.WARNING)


def test_a_dead_child_falls_back_to_loading_here(tmp_path, caplog):
  config = Config(data_path=_csv(tmp_path))
  background = loading.BackgroundLoad(config)
  background._process.kill()
  with caplog.at_level(logging.WARNING):
    result = background.result()
  _assert_same(result, loading.load_splits(config))
  assert any("ended without a result" in r.getMessage() for r in caplog.records)


def test_start_only_where_a_background_load_helps(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-cache"))
  # The credit-card set is not cached: its download logs as it goes, in this process.
  assert loading.start(Config()) is None
  # A prepared directory is streamed: nothing to preload.
  assert loading.start(Config(prepared_dir=str(tmp_path))) is None
  background = loading.start(Config(dataset="synthetic", synthetic_rows=5000))
  try:
    assert isinstance(background, loading.BackgroundLoad)
  finally:
    background.close()
  assert not background._process.is_alive()


def test_a_child_whose_parent_is_gone_exits_quietly():
  # A parent stopped before it needed the data (a bad flag after the start, SIGTERM) closes
  # its end; the child's send then fails, and it must end without a traceback (exit code 0).
  import multiprocessing
  context = multiprocessing.get_context("spawn")
  parent_end, child_end = context.Pipe(duplex=False)
  process = context.Process(target=loading._child,
                            args=(Config(dataset="synthetic", synthetic_rows=3000), child_end))
  process.start()
  child_end.close()
  parent_end.close()
  process.join(60)
  assert process.exitcode == 0
