"""Finite but extreme feature values (|x| > 1e100): refused with the cell named, or dropped.

Their squares overflow float64 in the scaler's statistics, so the run would train on NaN.
"""

import logging
import os

import numpy as np
import pytest

from engine.config import Config
from input_pipeline import columns, preprocessing
from input_pipeline.errors import DataError
from tests.conftest import run_main, small_frame


def _extreme(rows=3000, positives=90, cells=((2500, "V3", 1e308),)):
  frame = small_frame(rows, positives, seed=2)
  for row, col, value in cells:
    frame.loc[row, col] = value
  return frame


@pytest.mark.parametrize("value", [1e308, -1.5e150, 2e100])
def test_in_memory_prepare_names_the_column_row_and_value(value):
  frame = _extreme(cells=((2500, "V3", value),))
  with pytest.raises(DataError) as e:
    preprocessing.split_and_encode(frame, Config())
  message = str(e.value)
  assert "\n" not in message
  assert f"feature column 'V3' holds {value!r} in data row 2500" in message, message
  assert "--drop_invalid_rows" in message


def test_the_limit_itself_and_ordinary_large_values_pass():
  frame = _extreme(cells=((10, "V3", 1e100), (11, "Amount", 1e12)))
  splits = preprocessing.split_and_encode(frame, Config())
  assert np.isfinite(splits.x_train).all()


def test_extreme_rows_are_dropped_and_counted(caplog):
  frame = _extreme(cells=((5, "V3", 1e308), (6, "V4", -1e200), (7, "V1", np.inf),
                          (8, "V2", np.nan)))
  with caplog.at_level(logging.WARNING):
    rows = columns.read_rows(frame, columns.assign_roles(frame, Config()),
                             drop_invalid_rows=True)
  assert len(rows.numeric) == len(rows.labels) == 2997
  assert not set(rows.index) & {5, 6, 7} and 8 in set(rows.index)  # a gap is not invalid
  messages = [r.getMessage() for r in caplog.records]
  assert any("Dropping 3 row(s) with invalid features (0 text in numeric columns, 1 Inf, 2 "
             "finite beyond" in m for m in messages), messages
  splits = preprocessing.split_and_encode(frame, Config(drop_invalid_rows=True))
  assert np.isfinite(splits.x_train).all() and np.isfinite(splits.preprocessor.scale).all()


def test_chunked_prepare_names_the_file_row_and_writes_nothing(tmp_path):
  from input_pipeline import prepare
  csv = tmp_path / "data.csv"
  _extreme().to_csv(csv, index=False)
  out = tmp_path / "prepared"
  config = Config(data_path=str(csv), prepare_chunk_rows=700, prepare_shards=2)
  with pytest.raises(DataError, match=r"feature column 'V3' holds 1e\+308 in data row 2500"):
    prepare.prepare(config, str(out))
  assert not out.exists()
  meta = prepare.prepare(config.replace(drop_invalid_rows=True), str(out))
  assert sum(c["rows"] for c in meta["counts"].values()) == 2999
  assert np.isfinite(meta["statistics"]["scale"]).all()


def test_main_refuses_an_extreme_value_with_one_line(tmp_path):
  csv = tmp_path / "data.csv"
  _extreme(4000, 60).to_csv(csv, index=False)
  model_dir = tmp_path / "run"
  proc = run_main(f"--data_path={csv}", f"--model_dir={model_dir}", "--batch_size=256",
                  "--steps_per_epoch=2", "--epochs=1")
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "feature column 'V3' holds 1e+308 in data row 2500" in lines[0], \
      proc.stderr
  assert not os.path.exists(model_dir)
