"""--mode=prepare's --output_dir: never touches files it did not write, with --fresh or not."""

import hashlib
import os

import pytest

from engine.config import Config
from input_pipeline import prepare, prepared
from input_pipeline.errors import DataError
from tests.conftest import read_json, run_main, small_frame


def _snapshot(directory):
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), directory)] = hashlib.sha256(
            f.read()).hexdigest()
  return out


@pytest.fixture
def csv(tmp_path):
  path = tmp_path / "data.csv"
  small_frame(rows=2000, positives=80, seed=3).to_csv(path, index=False)
  return str(path)


def _config(csv, **kw):
  return Config(data_path=csv, **{"prepare_chunk_rows": 700, "prepare_shards": 4, **kw})


@pytest.mark.parametrize("fresh", [False, True])
def test_a_directory_of_other_files_is_refused_and_left_alone(tmp_path, csv, fresh):
  out = tmp_path / "work"
  (out / "sub").mkdir(parents=True)
  (out / "notes.txt").write_text("mine")
  (out / "sub" / "train-class0-00000-of-00004.tfrecord").write_text("also mine")
  before = _snapshot(out)
  with pytest.raises(DataError, match="is not empty and holds no prepared set"):
    prepare.prepare(_config(csv, fresh=fresh), str(out))
  assert _snapshot(out) == before


def test_main_refuses_a_directory_of_other_files_with_one_line(tmp_path, csv):
  out = tmp_path / "work"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  before = _snapshot(out)
  proc = run_main("--mode=prepare", f"--data_path={csv}", f"--output_dir={out}", "--fresh")
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "holds no prepared set" in lines[0], proc.stderr
  assert _snapshot(out) == before


def test_fresh_rewrites_the_set_and_keeps_other_files(tmp_path, csv):
  out = tmp_path / "prepared"
  prepare.prepare(_config(csv), str(out))
  (out / "notes.txt").write_text("mine")
  old_files = set(os.listdir(out)) - {"notes.txt"}
  # Another seed and fewer shards: the new set shares no shard file list with the old one.
  meta = prepare.prepare(_config(csv, fresh=True, seed=7, prepare_shards=2), str(out))
  assert (out / "notes.txt").read_text() == "mine"
  written = set(prepare._all_files(meta["files"])) | {prepared.METADATA_FILE}
  assert set(os.listdir(out)) == written | {"notes.txt"}
  assert not any(n.endswith("-of-00004.tfrecord") for n in os.listdir(out)), old_files
  on_disk = read_json(out / prepared.METADATA_FILE)
  assert on_disk["split"]["seed"] == 7 and on_disk["shards"] == 2
  prepared.PreparedData.open(str(out))  # a complete, readable set


def test_an_empty_existing_directory_is_accepted(tmp_path, csv):
  out = tmp_path / "empty"
  out.mkdir()
  prepare.prepare(_config(csv), str(out))
  assert os.path.exists(out / prepared.METADATA_FILE)
