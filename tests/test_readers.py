"""The one reader per file type: names, chunks and whole reads of CSV and Parquet."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pytest

from input_pipeline import readers
from input_pipeline.errors import DataError
from tests.conftest import run_main


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x00\x01\x02binary\xff\xfe" * 100, "binary"),
    (b"a,b,Class\n", "no data rows"),
    (b"just_one_column\n1\n2\n", "column"),
    (b"a,b,Class\n1,2\n3,4,5,6\n", "not a readable CSV file"),
])
def test_read_table_refuses_what_is_not_a_usable_csv(tmp_path, content, message):
  path = tmp_path / "bad.csv"
  path.write_bytes(content)
  with pytest.raises(DataError, match=message):
    readers.read_table(str(path))


def test_missing_file_and_directory_without_parquet(tmp_path):
  with pytest.raises(DataError, match="not found"):
    readers.read_table(str(tmp_path / "nope.csv"))
  with pytest.raises(DataError, match="directory without .parquet files"):
    readers.read_table(str(tmp_path))


def test_read_table_reads_gzip(tmp_path, csv_path):
  gz = tmp_path / "data.csv.gz"
  with open(csv_path, "rb") as f, gzip.open(gz, "wb") as g:
    g.write(f.read())
  assert readers.read_table(str(gz)).equals(readers.read_table(csv_path))


def test_csv_cells_are_text_until_a_whole_column_parses(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("code,x,gappy,flag,Class\n01234,1.5,,true,0\n1234,2,NA,TRUE,1\n")
  frame = readers.read_table(str(path), text_columns=("code",))
  assert frame["code"].tolist() == ["01234", "1234"]
  assert frame["x"].dtype == np.float64 and frame["x"].tolist() == [1.5, 2.0]
  assert frame["gappy"].dtype == np.float64 and frame["gappy"].isna().all()
  assert frame["flag"].tolist() == ["true", "TRUE"]  # text, as written


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 100])
def test_chunks_are_exact_and_numbered_by_file_row(tmp_path, rows):
  path = tmp_path / "t.csv"
  pd.DataFrame({"a": np.arange(7.0), "Class": [0, 1] * 3 + [0]}).to_csv(path, index=False)
  chunks = list(readers.open_table(str(path)).chunks(rows, numeric=("a",)))
  assert [len(c) for c in chunks][:-1] == [rows] * (len(chunks) - 1)
  whole = pd.concat(chunks)
  assert whole.index.tolist() == list(range(7)) and whole["a"].tolist() == list(range(7))


@pytest.mark.parametrize("header,named", [
    ("f1,f1,f2,Class", "'f1'"),
    ("f1,f2,Class,Class", "'Class'"),  # a join artefact: the label twice
    ("a,b,a,b,Class", "'a', 'b'"),
])
@pytest.mark.parametrize("mode", ["train", "prepare", "predict"])
def test_duplicate_headers_are_refused_in_one_line(tmp_path, header, named, mode):
  path = tmp_path / "dup.csv"
  width = len(header.split(","))
  path.write_text(header + "\n" + "\n".join(",".join(["1"] * (width - 1) + [str(i % 2)])
                                            for i in range(20)) + "\n")
  out = tmp_path / "out"
  proc = run_main(f"--data_path={path}", f"--mode={mode}", f"--output_dir={out}",
                  f"--export_dir={tmp_path}", f"--output={out}", f"--model_dir={tmp_path / 'm'}")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.count("\n") == 1 and "duplicate column name(s)" in proc.stderr
  assert named in proc.stderr
  assert not os.path.exists(out) and not os.path.exists(tmp_path / "m")
  with pytest.raises(DataError, match="duplicate column name"):
    readers.open_table(str(path))
