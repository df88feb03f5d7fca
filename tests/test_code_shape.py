"""The shape the code keeps (STYLE.md): a short main.py, no long function or module."""

import ast
import glob
import os

from tests.conftest import ROOT

LIBRARY = ("engine", "input_pipeline")


def _library_files():
  for package in LIBRARY:
    yield from sorted(glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True))


def test_main_is_short():
  with open(os.path.join(ROOT, "main.py")) as f:
    assert len(f.read().splitlines()) <= 250


def test_no_library_module_over_350_lines_nor_function_over_60():
  long_modules, long_functions = [], []
  for path in _library_files():
    with open(path) as f:
      text = f.read()
    name = os.path.relpath(path, ROOT)
    if len(text.splitlines()) > 350:
      long_modules.append(name)
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if node.end_lineno - node.lineno + 1 > 60:
          long_functions.append(f"{name}:{node.lineno} {node.name}")
  assert not long_modules and not long_functions, (long_modules, long_functions)
