"""--output of --mode=predict and --mode=evaluate: a bad path is named before any scoring."""

import numpy as np
import pytest

from engine import predict
from engine.config import Config, ConfigError
from tests.conftest import run_main, small_frame


class _FakeExport:
  """Scores every row 0.25: enough to reach the writing of the scores without a trained model."""

  raw_columns = [f"V{i}" for i in range(1, 29)]
  id_columns: list = []
  categorical_columns: list = []
  numeric_columns = raw_columns
  info: dict = {}
  threshold = 0.5

  def __init__(self, export_dir):
    del export_dir

  def score(self, frame):
    p = np.full(len(frame), 0.25)
    return p, p > self.threshold


@pytest.fixture
def csv(tmp_path):
  path = tmp_path / "rows.csv"
  small_frame(50, 2).drop(columns=["Class"]).to_csv(path, index=False)
  return str(path)


def test_predict_names_a_missing_output_directory(tmp_path, csv, monkeypatch):
  monkeypatch.setattr(predict, "ExportedModel", _FakeExport)
  output = str(tmp_path / "missing_dir" / "scores.csv")
  with pytest.raises(ConfigError) as e:
    predict.predict(Config(data_path=csv), "unused", output)
  assert str(e.value) == (f"invalid --output={output}: directory {tmp_path / 'missing_dir'} "
                          "does not exist")
  # The check is the output's only: a good path still writes the scores.
  scores = predict.predict(Config(data_path=csv), "unused", str(tmp_path / "scores.csv"))
  assert scores["rows"] == 50 and (tmp_path / "scores.csv").exists()


def test_predict_refuses_an_output_under_a_file_or_that_is_a_directory(tmp_path, csv,
                                                                         monkeypatch):
  monkeypatch.setattr(predict, "ExportedModel", _FakeExport)
  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match=r"directory .*file is not a directory"):
    predict.predict(Config(data_path=csv), "unused", str(tmp_path / "file" / "scores.csv"))
  with pytest.raises(ConfigError, match=r"is a directory"):
    predict.predict(Config(data_path=csv), "unused", str(tmp_path))
  assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("mode,name", [("predict", "scores.csv"), ("evaluate", "metrics.json")])
def test_main_names_a_missing_output_directory_before_scoring(tmp_path, csv, mode, name):
  output = tmp_path / "missing_dir" / name
  # No export at all: the output is checked first, so its error is the one reported.
  proc = run_main(f"--mode={mode}", f"--export_dir={tmp_path / 'no_export'}",
                  f"--data_path={csv}", f"--output={output}")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr == (f"error: invalid --output={output}: directory "
                         f"{tmp_path / 'missing_dir'} does not exist\n")
