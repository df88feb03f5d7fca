"""Bad input: exit code 2, one line on stderr naming the problem, the model directory untouched."""

import hashlib
import os

import numpy as np
import pytest

from tests.conftest import read_json, run_main, small_frame

TINY = ("--batch_size=256", "--steps_per_epoch=2", "--epochs=1", "--eval_batch_size=1024")


def _snapshot(directory):
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
  """A finished run on a small CSV: every bad attempt below targets its directory."""
  base = tmp_path_factory.mktemp("bad_input")
  data = base / "good.csv"
  small_frame(4000, 60).to_csv(data, index=False)
  model_dir = base / "run"
  proc = run_main(f"--data_path={data}", f"--model_dir={model_dir}", *TINY)
  assert proc.returncode == 0, proc.stderr
  return base, str(data), str(model_dir)


def _csv(base, name, frame=None, text=None, raw=None):
  path = base / name
  if frame is not None:
    frame.to_csv(path, index=False)
  elif text is not None:
    path.write_text(text)
  else:
    path.write_bytes(raw)
  return str(path)


def _cases(base, good):
  frame = small_frame(4000, 60)
  nan = frame.copy()
  nan.loc[[3, 9], "V4"] = np.nan
  nan.loc[5, "V5"] = np.inf
  text_col = frame.copy()
  text_col["V2"] = text_col["V2"].astype(object)
  text_col.loc[7, "V2"] = "twelve"
  bad_label = frame.copy()
  bad_label.loc[0, "Class"] = 2
  one_class = frame.assign(Class=0)
  few = frame.assign(Class=0)
  few.loc[:2, "Class"] = 1
  other_features = frame.drop(columns=["V28"])
  return [
      ("missing file", [f"--data_path={base / 'nope.csv'}"], "not found"),
      ("a directory", [f"--data_path={base}"], "is a directory"),
      ("binary garbage", [f"--data_path={_csv(base, 'g.csv', raw=os.urandom(4096) + bytes(8))}"],
       "binary"),
      ("empty file", [f"--data_path={_csv(base, 'e.csv', text='')}"], "is empty"),
      ("header only", [f"--data_path={_csv(base, 'h.csv', text='V1,V2,Class' + chr(10))}"],
       "no data rows"),
      ("missing label column", [f"--data_path={good}", "--label_column=is_fraud"],
       "label column 'is_fraud' not found"),
      ("non-numeric feature", [f"--data_path={_csv(base, 't.csv', text_col)}"],
       "feature column 'V2' holds 1 value(s) that are not numbers, e.g. 'twelve' in data row 7"),
      # The NaN cells are gaps (filled with the median); the Inf is refused.
      ("Inf features", [f"--data_path={_csv(base, 'n.csv', nan)}"],
       "1 row(s) have Inf features, e.g. column 'V5' in data row 5"),
      ("labels other than 0/1", [f"--data_path={_csv(base, 'l.csv', bad_label)}"],
       "must hold 0/1"),
      ("one class", [f"--data_path={_csv(base, 'o.csv', one_class)}"], "only class 0"),
      ("too few positives", [f"--data_path={_csv(base, 'f.csv', few)}"], "too few to stratify"),
      ("batch larger than the training split", [f"--data_path={good}", "--batch_size=131072"],
       "larger than the training split"),
      ("zero epochs", [f"--data_path={good}", "--epochs=0"], "--epochs=0"),
      ("negative batch size", [f"--data_path={good}", "--batch_size=-1"], "--batch_size=-1"),
      ("zero patience", [f"--data_path={good}", "--patience=0"], "--patience=0"),
      ("unknown strategy", [f"--data_path={good}", "--strategy=smote"], "--strategy"),
      ("unknown distribution", [f"--data_path={good}", "--distribution=nccl"], "--distribution"),
      ("learning rate <= 0", [f"--data_path={good}", "--learning_rate=-1"], "--learning_rate"),
      ("other strategy in the directory", [f"--data_path={good}", "--strategy=baseline"],
       "holds a run with strategy='oversample'"),
      ("other model shape in the directory", [f"--data_path={good}", "--hidden_units=32"],
       "holds a run with hidden_units"),
      ("other features in the directory",
       [f"--data_path={_csv(base, 'x.csv', other_features)}"], "other features"),
      # Another seed re-splits the rows: test rows of the run would be trained on.
      ("other seed in the directory", [f"--data_path={good}", "--seed=1"],
       "holds a run with seed=0, not 1; use another --model_dir or pass --fresh"),
      # The table is 1.5% fraud: a share of 0.5% would draw frauds less than the data holds.
      ("positive share below the fraud rate", [f"--data_path={good}",
                                               "--positive_fraction=0.005"],
       "--positive_fraction=0.005: below the training split's fraud rate"),
      ("other monitor in the directory", [f"--data_path={good}", "--monitor=val_loss"],
       "holds a run that early-stops on monitor='val_prc', not 'val_loss'"),
  ]


CASE_NAMES = [
    "missing file", "a directory", "binary garbage", "empty file", "header only",
    "missing label column", "non-numeric feature", "Inf features", "labels other than 0/1",
    "one class", "too few positives", "batch larger than the training split", "zero epochs",
    "negative batch size", "zero patience", "unknown strategy", "unknown distribution",
    "learning rate <= 0", "other strategy in the directory",
    "other model shape in the directory", "other features in the directory",
    "other seed in the directory", "positive share below the fraud rate",
    "other monitor in the directory"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_refused_cleanly(good_run, name):
  base, good, model_dir = good_run
  cases = _cases(base, good)
  assert [c[0] for c in cases] == CASE_NAMES
  _, flags, message = next(c for c in cases if c[0] == name)
  before = _snapshot(model_dir)
  proc = run_main(*TINY, f"--model_dir={model_dir}", *flags)
  assert proc.returncode == 2, (name, proc.stdout[-2000:], proc.stderr)
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert message in lines[0], lines[0]
  assert "Traceback" not in proc.stdout + proc.stderr
  assert _snapshot(model_dir) == before


def test_unwritable_model_dir(good_run):
  _, good, _ = good_run
  proc = run_main(*TINY, f"--data_path={good}", "--model_dir=/proc/imbalanced-engine-run")
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "not writable" in proc.stderr


def test_invalid_rows_can_be_dropped(good_run, tmp_path):
  base, _, _ = good_run
  frame = small_frame(4000, 60)
  frame.loc[[3, 9], "V4"] = np.inf
  frame.loc[11, "V6"] = np.nan  # a gap, not an invalid row: kept and filled
  frame["V2"] = frame["V2"].astype(object)
  frame.loc[7, "V2"] = "twelve"
  proc = run_main(*TINY, f"--data_path={_csv(base, 'drop.csv', frame)}", "--drop_invalid_rows",
                  f"--model_dir={tmp_path / 'run'}")
  assert proc.returncode == 0, proc.stderr
  assert ("Dropping 3 row(s) with invalid features (1 text in numeric columns, 2 Inf, 0 finite"
          in proc.stdout)
  counts = read_json(str(tmp_path / "run" / "results.json"))["data"]
  assert sum(c["rows"] for c in counts.values()) == 3997


def test_true_false_labels_are_mapped(good_run, tmp_path):
  base, _, _ = good_run
  frame = small_frame(4000, 60)
  frame["Class"] = frame["Class"].map({0: "false", 1: "true"})
  proc = run_main(*TINY, f"--data_path={_csv(base, 'tf.csv', frame)}",
                  f"--model_dir={tmp_path / 'run'}")
  assert proc.returncode == 0, proc.stderr


def test_fresh_replaces_an_incompatible_run(good_run, tmp_path):
  _, good, _ = good_run
  model_dir = tmp_path / "run"
  assert run_main(*TINY, f"--data_path={good}", f"--model_dir={model_dir}").returncode == 0
  proc = run_main(*TINY, f"--data_path={good}", f"--model_dir={model_dir}", "--strategy=baseline",
                  "--fresh")
  assert proc.returncode == 0, proc.stderr
  assert '"strategy": "baseline"' in (model_dir / "results.json").read_text()
