"""The import graph, read from the import statements of the source (ast): stages -> nnpipe ->
nnpipe.core, with the tooling (warm start, sweeps, fingerprint, bench) beside them."""
from __future__ import annotations

import ast
import graphlib

import pytest

from deps import ROOT

TOOLING = ("warmstart", "sweep", "fingerprint", "bench")
SOURCES = ("nnpipe", "stages", *TOOLING)


def _name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for top in SOURCES for p in sorted((ROOT / top).rglob("*.py"))}


def imports(module: str) -> set[str]:
    """The project modules ``module`` names in an import statement (in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                         else node.module for a in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {module: imports(module) for module in MODULES}


def _group(module: str) -> str:
    top = module.split(".")[0]
    return "core" if module.startswith("nnpipe.core") else "tooling" if top in TOOLING else top


# who may import whom; tooling may import anything, and the launcher (stages/__main__) warmstart
ALLOWED = {"core": {"core"}, "nnpipe": {"nnpipe", "core"}, "stages": {"stages", "nnpipe", "core"}}


@pytest.mark.parametrize("module", [m for m in MODULES if _group(m) in ALLOWED])
def test_arrows_point_one_way(module):
    wrong = sorted(other for other in GRAPH[module] if _group(other) not in ALLOWED[_group(module)]
                   and not (module == "stages.__main__" and other.startswith("warmstart")))
    assert not wrong, f"{module} imports {wrong}"


def test_no_module_imports_itself_through_others():
    graphlib.TopologicalSorter(GRAPH).prepare()  # CycleError names the modules of a cycle


def test_the_graph_sees_the_arrows_it_checks():
    """The negative control: the reader finds the known arrows, function-level ones included."""
    assert "warmstart.launcher" in GRAPH["stages.__main__"]
    assert "nnpipe.core.portable" in GRAPH["fingerprint.kernels"]
    assert "fingerprint.record" in GRAPH["fingerprint.__main__"]  # imported inside main()
    assert "ray" not in MODULES and all(_group(m) in (*ALLOWED, "tooling") for m in MODULES)


@pytest.mark.parametrize("module", [m for m in MODULES if _group(m) == "tooling"])
def test_no_tooling_module_is_over_300_lines(module):
    assert len(MODULES[module].read_text(encoding="utf-8").splitlines()) <= 300, module
