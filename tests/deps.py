"""Which nnpipe modules a stage script imports, directly or through other nnpipe modules."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def direct_imports(path: Path) -> set[str]:
    """nnpipe module names imported anywhere in ``path`` (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "nnpipe" and not node.module.startswith("nnpipe."):
                continue
            if (ROOT / node.module.replace(".", "/")).is_dir():  # from a package: its modules
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nnpipe."))
    return found


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def code_deps(path: Path) -> set[str]:
    """The code deps a stage script needs in dvc.yaml: itself, the core package as one
    directory, and every other nnpipe module it reaches by imports."""
    modules = closure(path)
    core = {m for m in modules if m.startswith("nnpipe/core/")}
    return {str(path.relative_to(ROOT))} | (modules - core) | ({"nnpipe/core"} if core else set())


def closure(path: Path) -> set[str]:
    """Repo-relative paths of every nnpipe module ``path`` reaches by imports."""
    seen: set[str] = set()
    todo = list(direct_imports(path))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(direct_imports(module_path(module)))
    return {str(module_path(m).relative_to(ROOT)) for m in seen}


def resolve_stages(document: dict) -> dict[str, dict]:
    """Every stage of a dvc.yaml document as DVC runs it: DVC's own resolver fills in vars,
    foreach and ${...} (``train@linear``, ``plot_model@numpy_mlp``, ...)."""
    from dvc.parsing import DataResolver
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return DataResolver(repo, repo.root_dir, document).resolve()["stages"]
