"""The project's modules import only from their own layer or below (README, "Layers"), and never in a circle.

The import graph is read from the source (an AST walk, local imports inside functions included): importing a.b.c
depends on a.b.c and on the __init__ of each package a, a.b that the importing module is not itself inside.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("distill", "models", "samplers", "configs")

# Top to bottom. A module belongs to the first layer with an entry equal to its name or a package above it.
LAYERS = (
    ("commands", ("distill.cli", "distill.cli_fid", "distill.cli_flags", "distill.quickstart")),
    ("api", ("distill.api", "distill.benchmarking")),
    ("runs", ("distill.branching", "distill.pipeline", "distill.exporting", "distill.run", "distill.gaussian_lab")),
    ("training", ("distill.trainer", "distill.objectives", "distill.pool", "distill.checkpointing",
                  "distill.teacher", "distill.boss", "distill.autodiffusion")),
    ("data and evaluation", ("distill.data", "distill.pairs", "distill.evaluation", "distill.partitions",
                             "distill.partitioned_data")),
    ("samplers", ("samplers",)),
    ("networks", ("distill.networks", "distill.stacked", "distill.analytic", "distill.lpips_weights", "models")),
    ("configs", ("configs",)),
    ("foundations", ("distill", "distill.errors", "distill.diffusion", "distill.sharding", "distill.images",
                     "distill.reporting", "distill.weights_file", "distill.pipeline_config", "distill.tree_masks",
                     "distill.restoration")),
)


def project_modules() -> dict[str, str]:
  """Dotted module name -> file, for every .py file of the project's packages."""
  modules = {}
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(REPO, package)):
      for name in files:
        if name.endswith(".py"):
          rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3].replace(os.sep, ".")
          modules[rel.removesuffix(".__init__")] = os.path.join(folder, name)
  return modules


def _with_packages(target: str, importer: str, modules) -> set[str]:
  """`target` plus the package __init__s above it that `importer` is not inside (those already ran)."""
  parts, deps = target.split("."), {target}
  for i in range(1, len(parts)):
    package = ".".join(parts[:i])
    if package in modules and not (importer == package or importer.startswith(package + ".")):
      deps.add(package)
  return deps


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
  graph = {}
  for name, path in modules.items():
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    deps = set()
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(anchor + ([node.module] if node.module else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
      for target in targets:
        while target and target not in modules:  # `import a.b.c` of a non-project name, or an attribute
          target = target.rpartition(".")[0]
        if target:
          deps |= _with_packages(target, name, modules)
    deps.discard(name)
    graph[name] = deps
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def layer_of(module: str) -> int:
  for depth, (_, entries) in enumerate(LAYERS):
    if any(module == e or module.startswith(e + ".") for e in entries if e != "distill"):
      return depth
  if module == "distill":
    return len(LAYERS) - 1
  raise AssertionError(f"{module} is in no layer of tests/test_layering.py: add it to LAYERS (and the README)")


@pytest.fixture(scope="module")
def graph():
  return import_graph(project_modules())


def test_no_import_circles(graph):
  assert cycles(graph) == []


def test_imports_go_down_the_layers(graph):
  upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
            for m, deps in sorted(graph.items()) for d in sorted(deps) if layer_of(d) < layer_of(m)]
  assert upward == []


def test_configs_import_only_config_helpers(graph):
  outside = {(m, d) for m, deps in graph.items() if m.startswith("configs") for d in deps
             if not d.startswith("configs") and d not in ("distill", "distill.pipeline_config")}
  assert outside == set()


def test_the_checker_sees_circles_and_local_imports(tmp_path):
  """The walk finds an import inside a function, relative imports and package __init__ edges."""
  (tmp_path / "pkg").mkdir()
  files = {"pkg/__init__.py": "from pkg import a\n", "pkg/a.py": "def f():\n  from . import b\n",
           "pkg/b.py": "import pkg.c\n", "pkg/c.py": "import other\n", "other.py": "import pkg\n"}
  for rel, text in files.items():
    (tmp_path / rel).write_text(text)
  modules = {rel[:-3].replace("/", ".").removesuffix(".__init__"): str(tmp_path / rel) for rel in files}
  graph = import_graph(modules)
  assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["other"] == {"pkg"}
  assert graph["pkg.c"] == {"other"}
  assert cycles(graph) == [["other", "pkg", "pkg.a", "pkg.b", "pkg.c"]]
  del modules["other"]
  assert cycles(import_graph(modules)) == []


def test_config_docstrings_say_what_and_how_in_at_most_15_lines():
  """Configs say what they are, how to run them and their headline; measurements live in docs/results/."""
  long = {}
  for name in sorted(os.listdir(os.path.join(REPO, "configs"))):
    if name.endswith(".py"):
      with open(os.path.join(REPO, "configs", name)) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
      if len(doc.splitlines()) > 15:
        long[name] = len(doc.splitlines())
  assert long == {}
