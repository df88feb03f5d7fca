"""No import circle among the project's modules (engine/, input_pipeline/, main.py).

A circle means a layer sits above the module it is built on (input_pipeline/data.py, the
interface, imported prepared.py, one of its implementations, for `open_data`). Imports inside
functions count too: they hide a circle from the interpreter, not from the reader.
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("engine", "input_pipeline")


def project_modules(root: str = ROOT) -> dict[str, str]:
  """{dotted module name: path} of main.py and every module under PACKAGES."""
  modules = {"main": os.path.join(root, "main.py")}
  for package in PACKAGES:
    for directory, _, files in os.walk(os.path.join(root, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(directory, name)
          dotted = os.path.relpath(path, root)[:-len(".py")].replace(os.sep, ".")
          modules[dotted.removesuffix(".__init__")] = path
  return modules


def imported(module: str, path: str, modules: dict[str, str]) -> set[str]:
  """The project modules `module` imports anywhere in its file (function bodies included)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: from the package, up level - 1 more.
        parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
        base = ".".join(p for p in (*parts, base) if p)
      names.add(base)
      # `from package import module` imports the module.
      names.update(f"{base}.{alias.name}" for alias in node.names)
  found = set()
  for name in names:
    # `import a.b.c` loads a, a.b and a.b.c; the deepest project module is the edge that counts.
    while name and name not in modules:
      name = name.rpartition(".")[0]
    if name and name != module:
      found.add(name)
  return found


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
  modules = project_modules(root)
  graph = {m: imported(m, p, modules) for m, p in modules.items()}
  # A package's __init__ runs before any of its modules: importing engine.loop imports engine.
  # That edge is not a circle of the code's own making unless __init__ imports back, which the
  # __init__'s own edges show; so packages are left out as targets of their submodules.
  for m, targets in graph.items():
    targets.difference_update(p for p in PACKAGES if m.startswith(p + "."))
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle as [a, b, ..., a], or None (depth-first search, in sorted order)."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done.
  path: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_find_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_graph_sees_function_level_and_from_imports(tmp_path):
  for package in PACKAGES:
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
  (tmp_path / "main.py").write_text("def f():\n  from engine import loop\n")
  (tmp_path / "engine" / "loop.py").write_text("from input_pipeline.data import Data\n")
  (tmp_path / "input_pipeline" / "data.py").write_text(
      "def open_data():\n  from input_pipeline import prepared\n")
  (tmp_path / "input_pipeline" / "prepared.py").write_text("from . import data\n")
  graph = import_graph(str(tmp_path))
  assert graph["main"] == {"engine", "engine.loop"}
  assert graph["engine.loop"] == {"input_pipeline.data"}
  assert find_cycle(graph) == ["input_pipeline.data", "input_pipeline.prepared",
                               "input_pipeline.data"]


def test_no_import_circle():
  graph = import_graph()
  assert "engine.loop" in graph and graph["main"], "the scan found no project modules"
  cycle = find_cycle(graph)
  assert cycle is None, "import circle: " + " -> ".join(cycle)
