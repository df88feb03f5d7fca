"""A resume must read the same rows split the same way: the data's identity in the run."""

import json
import os
import shutil

import pytest

from engine import run_dir
from engine.config import Config, ConfigError
from input_pipeline import sources

MIB = 1 << 20


def _write(path, size, seed=0):
  import numpy as np
  path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes())
  return str(path)


def _flip(path, offset):
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("size", [1000, 40 * MIB + 12345])
def test_fingerprint_is_the_content_not_the_file(tmp_path, size):
  a = _write(tmp_path / "a.csv", size)
  b = str(tmp_path / "b.csv")
  shutil.copyfile(a, b)
  os.utime(b, (1, 1))  # a copy's mtime says nothing
  assert sources.fingerprint(a) == sources.fingerprint(b)
  assert len(sources.fingerprint(a)) == 64
  # One byte inside a sampled block: the first MiB, the last, one of the 14 in between.
  offsets = [size // 2] if size < 16 * MIB else [17, size - 3, (size - MIB) * 7 // 15 + 100]
  for offset in offsets:
    shutil.copyfile(a, b)
    _flip(b, offset)
    assert sources.fingerprint(a) != sources.fingerprint(b), offset


def test_fingerprint_sees_the_size(tmp_path):
  a = _write(tmp_path / "a.csv", 40 * MIB)
  with open(a, "ab") as f:
    f.write(b"\0")
  b = _write(tmp_path / "b.csv", 40 * MIB)
  assert sources.fingerprint(a) != sources.fingerprint(b)


def _run(tmp_path, config, features=("a", "b")):
  model_dir = tmp_path / "run"
  model_dir.mkdir(exist_ok=True)
  run_dir.write_atomic(str(model_dir / run_dir.CONFIG_FILE), config.to_json())
  run_dir.write_json(str(model_dir / run_dir.PREPROCESSING_FILE),
                     {"feature_names": list(features)})
  run_dir.write_data_identity(str(model_dir), config)
  return str(model_dir)


# (field, the run's config, the resuming config, old and new value as the message shows them)
def _cases(tmp_path):
  data = str(tmp_path / "data.csv")
  other = str(tmp_path / "other.csv")
  base = Config(data_path=data)
  return [
      ("dataset", Config(dataset="synthetic"), Config(dataset="creditcard"),
       "'synthetic'", "'creditcard'"),
      ("data_path", base, base.replace(data_path=other), repr(data), repr(other)),
      ("prepared_dir", Config(prepared_dir=str(tmp_path / "p1")),
       Config(prepared_dir=str(tmp_path / "p2")), repr(str(tmp_path / "p1")),
       repr(str(tmp_path / "p2"))),
      ("synthetic_rows", Config(dataset="synthetic", synthetic_rows=5000),
       Config(dataset="synthetic", synthetic_rows=6000), "5000", "6000"),
      ("seed", base, base.replace(seed=1), "0", "1"),
      ("validation_fraction", base, base.replace(validation_fraction=0.1), "0.16", "0.1"),
      ("test_fraction", base, base.replace(test_fraction=0.3), "0.2", "0.3"),
      ("clip", base, base.replace(clip=3.0), "5.0", "3.0"),
      ("label_column", base, base.replace(label_column="y"), "'Class'", "'y'"),
      ("drop_invalid_rows", base, base.replace(drop_invalid_rows=True), "False", "True"),
  ]


FIELDS = ["dataset", "data_path", "prepared_dir", "synthetic_rows", "seed",
          "validation_fraction", "test_fraction", "clip", "label_column", "drop_invalid_rows"]


@pytest.mark.parametrize("field", FIELDS)
def test_a_resume_on_other_data_or_another_split_is_refused(tmp_path, field):
  for name in ("data.csv", "other.csv"):
    (tmp_path / name).write_text("a,b,Class\n1,2,0\n")
  for name in ("p1", "p2"):
    (tmp_path / name).mkdir()
    (tmp_path / name / "metadata.json").write_text(json.dumps({"name": name}))
  cases = {c[0]: c for c in _cases(tmp_path)}
  assert sorted(cases) == sorted(FIELDS)
  _, old, new, old_shown, new_shown = cases[field]
  model_dir = _run(tmp_path, old)
  before = sorted(os.listdir(model_dir))
  with pytest.raises(ConfigError) as e:
    run_dir.check_compatible(model_dir, new, ["a", "b"])
  message = str(e.value)
  assert "\n" not in message
  assert f"holds a run with {field}={old_shown}, not {new_shown}" in message, message
  assert "--fresh" in message
  assert run_dir.check_compatible(model_dir, new.replace(fresh=True), ["a", "b"]) is False
  assert run_dir.check_compatible(model_dir, old, ["a", "b"]) is True
  assert sorted(os.listdir(model_dir)) == before


def test_changes_that_do_not_touch_the_data_resume(tmp_path):
  (tmp_path / "data.csv").write_text("a,b,Class\n1,2,0\n")
  config = Config(data_path=str(tmp_path / "data.csv"))
  model_dir = _run(tmp_path, config)
  assert run_dir.check_compatible(model_dir, config.replace(
      epochs=7, patience=3, learning_rate=0.01, distribution="default", batch_size=512,
      steps_per_epoch=9, steps_per_loop=3, checkpoints_to_keep=1,
      checkpoint_interval_seconds=0.0, target_recall=0.8, eval_batch_size=100), ["a", "b"])


def test_the_same_file_named_relatively_resumes(tmp_path, monkeypatch):
  (tmp_path / "data.csv").write_text("a,b,Class\n1,2,0\n")
  model_dir = _run(tmp_path, Config(data_path=str(tmp_path / "data.csv")))
  monkeypatch.chdir(tmp_path)
  assert run_dir.check_compatible(model_dir, Config(data_path="data.csv"), ["a", "b"])


def test_other_content_under_the_same_name_is_refused(tmp_path):
  path = tmp_path / "data.csv"
  path.write_text("a,b,Class\n1,2,0\n")
  config = Config(data_path=str(path))
  model_dir = _run(tmp_path, config)
  identity = json.loads((tmp_path / "run" / run_dir.DATA_FILE).read_text())
  assert identity["fingerprint"] == sources.fingerprint(str(path))
  assert identity["size"] == os.path.getsize(path)
  path.write_text("a,b,Class\n1,3,0\n")  # the same size, one digit changed
  with pytest.raises(ConfigError) as e:
    run_dir.check_compatible(model_dir, config, ["a", "b"])
  message = str(e.value)
  assert "\n" not in message and "fingerprint=" in message and "--fresh" in message, message
  assert identity["fingerprint"][:12] in message and sources.fingerprint(str(path))[:12] in message


def test_a_changed_prepared_set_is_refused(tmp_path):
  (tmp_path / "p").mkdir()
  (tmp_path / "p" / "metadata.json").write_text('{"seed": 0}')
  config = Config(prepared_dir=str(tmp_path / "p"))
  model_dir = _run(tmp_path, config)
  (tmp_path / "p" / "metadata.json").write_text('{"seed": 1}')  # prepared again, another split
  with pytest.raises(ConfigError, match="fingerprint="):
    run_dir.check_compatible(model_dir, config, ["a", "b"])


@pytest.mark.parametrize("config", [Config(), Config(dataset="synthetic")])
def test_fixed_sources_record_no_fingerprint(tmp_path, config):
  model_dir = _run(tmp_path, config)
  identity = json.loads((tmp_path / "run" / run_dir.DATA_FILE).read_text())
  assert "fingerprint" not in identity
  assert run_dir.check_compatible(model_dir, config, ["a", "b"])


def test_data_json_is_owned_by_the_run(tmp_path):
  assert run_dir.DATA_FILE == "data.json" and run_dir.DATA_FILE in run_dir.OWNED
  model_dir = _run(tmp_path, Config())
  (tmp_path / "run" / "notes.txt").write_text("mine")
  run_dir.clear(model_dir)
  assert os.listdir(model_dir) == ["notes.txt"]
