"""``python -m warmstart.record``: what the warm server preloads, recorded from a run of the
pipeline (PRELOAD_FILE, which warmstart.protocol reads).

Runs every stage of dvc.yaml (as DVC's resolver expands it, in its order) cold, each in its
own process, in a copy of this repository, and notes the modules each imported (sys.modules
at its end, startup's left out): lazy imports included (pydantic's parts on first use,
matplotlib's image plugins on the first savefig). The third-party ones, top-level packages
first, then submodules by depth, importers before what they import, are reduced to those that importing the ones before them
does not import (``torch`` stands for its ~1,000 submodules; ``pydantic.main``, which
``pydantic`` imports lazily, is listed after it). The standard library and this repository's
packages are left out.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from warmstart.protocol import PRELOAD_FILE

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m warmstart.record"
PROJECT = frozenset({"nnpipe", "stages", "warmstart", "sweep", "fingerprint", "bench"})
LEFT_OUT = (".git", ".dvc", "__pycache__", ".pytest_cache", "tests", "docs", "dvc_plots")


def stage_commands(root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """(name, argv) of every stage of dvc.yaml, in its order, as DVC's resolver expands it."""
    import yaml
    from dvc.parsing import DataResolver
    from dvc.repo import Repo

    document = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    with Repo(str(root)) as repo:
        stages = DataResolver(repo, repo.root_dir, document).resolve()["stages"]
    return [(name, shlex.split(stage["cmd"])) for name, stage in stages.items()]


def _third_party(module: str) -> bool:
    top = module.partition(".")[0]
    return top not in sys.stdlib_module_names and top not in PROJECT


# Runs a stage as ``python -m stages`` does, then writes the modules it imported, in the order
# their imports ended (startup's left out), to the file argv[1] names.
_RUN = """import json, os, runpy, sys
before, out, leave = set(sys.modules), sys.argv.pop(1), os._exit
def dump():
    with open(out, "w") as handle:
        json.dump([m for m in list(sys.modules) if m not in before], handle)
os._exit = lambda code: (dump(), leave(code))  # a stage's fast exit (nnpipe.core.cli)
try:
    runpy.run_module("stages", run_name="__main__", alter_sys=True)
finally:
    dump()
"""
# Keeps, in order, each module a fresh process has not imported by the time its turn comes, if
# an installed package's (not the interpreter's own, e.g. _sysconfigdata_*, nor a failed import
# such as a library's probe for Jython's org.python.core).
_REDUCE = """import importlib, json, site, sys
installed = (*site.getsitepackages(), site.getusersitepackages())
kept = []
for name in json.load(sys.stdin):
    if name not in sys.modules:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), "")
        if where.startswith(installed):
            kept.append(name)
print(json.dumps(kept))
"""


def reduce(modules: list[str]) -> list[str]:
    """The third-party ``modules``, packages before their submodules, that importing the ones
    before them does not import."""
    # sys.modules holds a module from the end of its import: reversed, importers come first
    candidates = sorted((m for m in reversed(modules) if _third_party(m)),
                        key=lambda m: m.count("."))
    result = subprocess.run([sys.executable, "-c", _REDUCE], input=json.dumps(candidates),
                            cwd="/", capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def record(root: Path = ROOT) -> list[str]:
    """PRELOAD: what each stage imported (sys.modules at its end, in pipeline order), reduced."""
    imported: dict[str, None] = {}
    commands = stage_commands(root)
    with tempfile.TemporaryDirectory(prefix="nnpipe-record-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(*LEFT_OUT))
        env = {**os.environ, "NNPIPE_WARM": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        for name, argv in commands:
            assert argv[:3] == ["python", "-m", "stages"], argv
            out = Path(tmp) / "modules.json"
            result = subprocess.run([sys.executable, "-c", _RUN, str(out), *argv[3:]], cwd=copy,
                                    env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{COMMAND}: stage {name} failed: {result.stderr[-2000:]}")
            imported.update(dict.fromkeys(json.loads(out.read_text(encoding="utf-8"))))
    return reduce(list(imported))


def main() -> None:
    preload = record()
    Path(PRELOAD_FILE).write_text(json.dumps({"command": COMMAND, "preload": preload}, indent=1)
                            + "\n", encoding="utf-8")
    print(f"wrote {PRELOAD_FILE}: {len(preload)} modules")


if __name__ == "__main__":
    main()
