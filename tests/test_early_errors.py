"""Errors found before TensorFlow is imported: a bad --data_path is one line, at once."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_main

# Runs main.main in-process (in a fresh interpreter) and reports what it imported: the data
# file's errors must come before TensorFlow's ~3 s import and before the config dump.
_IN_PROCESS = r"""
import sys
sys.path.insert(0, sys.argv[1])
import main
argv = main.parse_flags(["main.py"] + sys.argv[2:])
try:
  main.main(argv)
  code = 0
except SystemExit as e:
  code = e.code
print(code, "tensorflow" in sys.modules)
"""


def _bad_paths(tmp_path):
  (tmp_path / "empty.csv").write_text("")
  unreadable = tmp_path / "unreadable.csv"
  unreadable.write_text("a,Class\n1,0\n")
  unreadable.chmod(0)
  return {"missing": (str(tmp_path / "missing.csv"), "not found"),
          "directory": (str(tmp_path), "is a directory"),
          "empty": (str(tmp_path / "empty.csv"), "is empty"),
          "unreadable": (str(unreadable), "cannot be read")}


@pytest.mark.parametrize("mode", ["train", "prepare", "predict", "evaluate"])
@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "unreadable"])
def test_a_bad_data_path_fails_before_tensorflow_is_imported(tmp_path, mode, kind):
  if kind == "unreadable" and os.geteuid() == 0:
    pytest.skip("root reads a file without read permission")
  path, message = _bad_paths(tmp_path)[kind]
  flags = [f"--mode={mode}", f"--data_path={path}", f"--model_dir={tmp_path / 'run'}",
           f"--output_dir={tmp_path / 'prepared'}", f"--export_dir={tmp_path / 'export'}",
           f"--output={tmp_path / 'out.csv'}"]
  proc = subprocess.run([sys.executable, "-c", _IN_PROCESS, ROOT, *flags], capture_output=True,
                        text=True, timeout=120, cwd=ROOT)
  assert proc.stdout.split() == ["2", "False"], (proc.stdout, proc.stderr)
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
  assert not (tmp_path / "run").exists() and not (tmp_path / "prepared").exists()


def test_a_missing_data_file_is_one_line_and_no_config_dump(tmp_path):
  proc = run_main(f"--data_path={tmp_path / 'missing.csv'}", f"--model_dir={tmp_path / 'run'}")
  assert proc.returncode == 2
  assert proc.stdout == ""
  assert proc.stderr == f"error: data file not found: {tmp_path / 'missing.csv'}\n"
  assert not (tmp_path / "run").exists()
