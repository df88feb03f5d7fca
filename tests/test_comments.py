"""No measured figure in a comment or docstring under engine/ or input_pipeline/.

A timing, a rate, a speed-up or a size written beside the code is stale after the next change
(six such comments were, when this test was written). Comments state the constraint or the
reason; the figures live in BUILD.md (the current one, with its date and machine) and
benchmarks/RESULTS.md (the history).
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("engine", "input_pipeline")

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_NOT_AFTER = r"(?<![\w.'\"`])"  # Not inside a name, a version, a quoted or `code` example.
# Each pattern is one kind of measurement; the name says which in the failure message.
PATTERNS = {
    "a time": _NOT_AFTER + rf"{_NUMBER}(?:\s?-\s?{_NUMBER})?\s?(?:s|ms|µs|us|ns|sec|secs|seconds?|"
              r"min|minutes?|h|hours?)\b",
    "a size": _NOT_AFTER + rf"{_NUMBER}\s?(?:[KMGT]i?B|kB)\b",
    "a share in %": rf"{_NUMBER}\s?%",
    "a speed-up": _NOT_AFTER + rf"{_NUMBER}x(?![\w`])",
    "a rate": r"\b(?:rows|examples|steps|batches|records|member-examples)/s\b",
    "a count in millions or thousands": _NOT_AFTER + rf"{_NUMBER}\s?[MkK](?![\w])",
    "an approximate quantity": rf"~\s?{_NUMBER}",
    "the word 'measured'": r"\bmeasured\b|\bmeasurements?\b|\bbenchmark(?:ed)? at\b",
}
_COMPILED = {name: re.compile(p) for name, p in PATTERNS.items()}

# Lines the scan flags that define a constant rather than report a measurement: (path, the
# line's text, stripped). At most five, each a definition whose figure is the constant itself.
# Empty today: the comments beside such constants name the constant instead of repeating it.
ALLOWED: set[tuple[str, str]] = set()


def comment_lines(source: str) -> list[tuple[int, str]]:
  """(line number, text) of every comment and docstring line of a module."""
  lines = []
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      lines.append((token.start[0], token.string))
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
          and isinstance(body[0].value.value, str):
        first = body[0].lineno
        for i, text in enumerate(body[0].value.value.splitlines()):
          lines.append((first + i, text))
  return sorted(lines)


def measurements(text: str) -> list[str]:
  """The kinds of measurement a line of comment carries ([] when none)."""
  return [name for name, pattern in _COMPILED.items() if pattern.search(text)]


def scan(root: str = ROOT, allowed: set[tuple[str, str]] = ALLOWED) -> list[str]:
  """`path:line: kinds: text` for every flagged line not in `allowed`."""
  found = []
  for package in PACKAGES:
    for directory, _, files in os.walk(os.path.join(root, package)):
      for name in sorted(files):
        if not name.endswith(".py"):
          continue
        path = os.path.join(directory, name)
        relative = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
          source = f.read()
        code = source.splitlines()
        for number, text in comment_lines(source):
          kinds = measurements(text)
          if kinds and (relative, code[number - 1].strip()) not in allowed:
            found.append(f"{relative}:{number}: {', '.join(kinds)}: {text.strip()}")
  return found


@pytest.mark.parametrize("text,kinds", [
    ("# ~1.2 s of a ~10 s run", ["a time", "an approximate quantity"]),
    ("# 5-10 ms on the 45k validation rows",
     ["a time", "a count in millions or thousands"]),
    ("# ~12 MB of buffer", ["a size", "an approximate quantity"]),
    ("# at least 90% distinct", ["a share in %"]),
    ("# XLA made it 2.6x faster", ["a speed-up"]),
    ("# the stream runs at 3M rows/s", ["a rate", "a count in millions or thousands"]),
    ("# as measured on 2 cores", ["the word 'measured'"]),
    # Not measurements: shapes, names, arithmetic, versions, plain counts and constants.
    ("# a [B, K] logit, 256x256 members, float64", []),
    ("# log(Amount + 0.001); class weights total/(2*count)", []),
    ("# tf.nn.compute_average_loss, Keras 3.15, 20-step epochs", []),
    ("# sigmoid(x) for x in [-5, 5]; 16 bits, two to a Philox word", []),
])
def test_measurements_by_kind(text, kinds):
  assert measurements(text) == kinds


def test_comment_lines_finds_comments_and_docstrings():
  source = '"""Module, 2 s."""\n\nx = 1  # 3 ms\n\n\ndef f():\n  """One.\n\n  4 MB.\n  """\n'
  assert comment_lines(source) == [(1, "Module, 2 s."), (3, "# 3 ms"), (7, "One."), (8, ""),
                                   (9, "  4 MB."), (10, "  ")]


def test_scan_flags_a_planted_figure(tmp_path):
  package = tmp_path / "engine"
  package.mkdir()
  (package / "fast.py").write_text('"""Fast."""\n\nSTEPS = 50  # each ~40 ms on 2 cores\n')
  (tmp_path / "input_pipeline").mkdir()
  assert scan(str(tmp_path)) == [
      "engine/fast.py:3: a time, an approximate quantity: # each ~40 ms on 2 cores"]
  # An allowed constant's definition is matched by its whole line, in its own file only.
  line = ("engine/fast.py", "STEPS = 50  # each ~40 ms on 2 cores")
  assert scan(str(tmp_path), allowed={line}) == []
  assert scan(str(tmp_path), allowed={("engine/slow.py", line[1])}) != []


def test_allowlist_is_short():
  assert len(ALLOWED) <= 5


def test_no_measured_figure_in_comments():
  found = scan()
  assert not found, (
      "comments and docstrings carrying a measured figure (state the constraint or the reason; "
      "put the figure in BUILD.md or benchmarks/RESULTS.md, with its date and machine):\n"
      + "\n".join(found))
