"""Every `python main.py ...` command in README.md and BUILD.md names real flags with valid values.

The commands are read where a reader copies them from: fenced blocks, indented blocks and inline
`code`, a command continued over lines by a trailing backslash included. Each is parsed by
main.py's absl flags and turned into a config the way main.py does (`main.config_from_flags`,
which validates it), so a renamed flag, a dropped enum value or a value the config refuses
fails here, naming the document, the line and the flag. Files a command names (`new.csv`) need
not exist: only the flags are checked.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest
from absl import flags

from tests.conftest import ROOT

DOCS = ("README.md", "BUILD.md")
_COMMAND = re.compile(r"\bpython3? main\.py\b")
_SHELL_END = {"&", "&&", ";", "|", "||", ">", ">>", "<", "2>", "2>&1", ")"}


def code_snippets(text: str) -> list[tuple[int, str]]:
  """(first line number, text) of the code in a markdown document, continuations joined.

  Fenced and indented blocks line by line (a line ending in a backslash joined with the next);
  inline `code` spans, which may wrap over lines of a paragraph, whole.
  """
  lines = text.split("\n")
  snippets = []
  prose = []  # (line number, line) outside code blocks, for the inline spans.
  fenced = False
  pending = None  # [first line number, text so far] of a backslash-continued line.
  for number, line in enumerate(lines, start=1):
    if line.lstrip().startswith("```"):
      fenced = not fenced
      continue
    if fenced or line.startswith("    ") or line.startswith("\t"):
      if pending:
        pending[1] += " " + line.strip()
      else:
        pending = [number, line.strip()]
      if pending[1].endswith("\\"):
        pending[1] = pending[1][:-1].rstrip()
      else:
        snippets.append(tuple(pending))
        pending = None
      continue
    prose.append((number, line))
  starts, joined, offset = [], "", 0
  for number, line in prose:
    starts.append((offset, number))
    joined += line + "\n"
    offset += len(line) + 1
  for match in re.finditer(r"`([^`]+)`", joined):
    number = max(n for start, n in starts if start <= match.start())
    snippets.append((number, " ".join(match.group(1).split())))
  return sorted(snippets)


def main_commands(text: str) -> list[tuple[int, list[str]]]:
  """(line number, flags) of every `python main.py` command in a markdown document."""
  commands = []
  for number, snippet in code_snippets(text):
    for match in _COMMAND.finditer(snippet):
      lexer = shlex.shlex(snippet[match.end():], posix=True, punctuation_chars=True)
      lexer.whitespace_split = True
      lexer.commenters = "#"
      args = []
      for token in lexer:
        if token in _SHELL_END:
          break
        args.append(token)
      commands.append((number, args))
  return commands


def documented_commands() -> list[tuple[str, list[str]]]:
  found = []
  for doc in DOCS:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
      for number, args in main_commands(f.read()):
        found.append((f"{doc}:{number}", args))
  return found


def flag_names(flag_values) -> set[str]:
  """Every name a command line may use: --name, and --noname for booleans."""
  names = set()
  for name in flag_values:
    names.add(name)
    if flag_values[name].boolean:
      names.add("no" + name)
  return names


def check_command(args: list[str]) -> str | None:
  """Why `python main.py ARGS` would be refused before it starts; None if it would not."""
  import main
  from engine.config import ConfigError
  if len(args) == 1 and args[0] in main.HELP_FLAGS:
    return None  # absl defines these in app.run; main.py prints the help and exits 0.
  known = flag_names(main.FLAGS)
  for arg in args:
    if not arg.startswith("--"):
      return f"{arg!r} is not a --flag"
    name = arg[2:].split("=", 1)[0]
    if name not in known:
      return f"--{name} is not a flag of main.py"
  main.FLAGS.unparse_flags()
  try:
    main.FLAGS(["main.py", *args])
    main.config_from_flags()
  except flags.Error as e:
    return f"flag refused: {e}"
  except ConfigError as e:
    return f"config refused: {e}"
  except SystemExit as e:  # main.fail: the message went to stderr.
    return f"main.py exits with {e.code} on these flags"
  finally:
    main.FLAGS.unparse_flags()
  return None


COMMANDS = documented_commands()


@pytest.mark.parametrize("where,args", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_is_valid(where, args):
  why = check_command(args)
  assert why is None, f"{where}: python main.py {' '.join(args)}\n  {why}"


def test_the_docs_hold_commands():
  # A parser that found nothing would pass every case above.
  docs = {where.split(":")[0] for where, _ in COMMANDS}
  assert docs == set(DOCS) and len(COMMANDS) >= 8, COMMANDS


SAMPLE = """Text with `python main.py --strategy=baseline` inline, and one
that wraps: `python main.py --epochs=3
--seed=1`.

```bash
python main.py --mode=predict --export_dir=runs/x/export \\
    --data_path=new.csv --output=scores.csv   # a comment
for i in 0 1; do TF_CONFIG=x python main.py --distribution=multi_worker & done
python other.py --not=this
```

    python main.py --ensemble=8 --batch_size=2048
"""


def test_commands_are_found_in_every_form():
  assert main_commands(SAMPLE) == [
      (1, ["--strategy=baseline"]),
      (2, ["--epochs=3", "--seed=1"]),
      (6, ["--mode=predict", "--export_dir=runs/x/export", "--data_path=new.csv",
           "--output=scores.csv"]),
      (8, ["--distribution=multi_worker"]),
      (12, ["--ensemble=8", "--batch_size=2048"]),
  ]


@pytest.mark.parametrize("args,why", [
    (["--strategy=oversample", "--epochs=3"], None),
    (["--fresh", "--nodeterministic"], None),
    (["--helpfull"], None),
    (["--strategies=all"], "--strategies is not a flag"),
    (["--strategy=bogus"], "flag refused"),
    (["--epochs=three"], "flag refused"),
    (["--epochs=0"], "config refused"),
    (["--hidden_units=64,x"], "exits with 2"),
    (["new.csv"], "is not a --flag"),
])
def test_check_command(args, why):
  result = check_command(args)
  if why is None:
    assert result is None
  else:
    assert result is not None and why in result, result


def test_builds_flag_table_lists_every_config_field():
  from engine.config import fields
  text = open(os.path.join(ROOT, "BUILD.md")).read()
  table = text[text.index("## Flags"):text.index("### Why an epoch is 50 steps")]
  missing = [f.name for f in fields() if f"`--{f.name}`" not in table]
  assert not missing, f"BUILD.md's flag table lacks {missing}"
