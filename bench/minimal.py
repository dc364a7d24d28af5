"""A minimal DVC pipeline of the same shape as a repository's: the yardstick of a no-op.

Every stage of the repository's expanded dvc.yaml (foreach included) becomes a stage with the
same name (``@`` as ``_``), the same deps, params and outs, path for path, and the same cache
and metrics/plots flags; its command writes one line into each of its outs (a directory out:
the files it holds in the repository). A dep no stage writes is a one-line file (or a
directory of one), and params.yaml is copied, so DVC has the same paths, params and lock
entries to check, with no templating, no code and tiny files. ``dvc repro`` with nothing changed costs DVC's own start
and its checks of that shape: what a no-op of the real pipeline is measured against.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

WRITE = "import os, sys\nfor path in sys.argv[1:]:\n" \
    "    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n" \
    "    open(path, 'w').write(path + '\\n')\n"


def _stage(stage, source: Path, made: set[str]) -> dict:
    from dvc.dependency.param import ParamsDependency

    def written(path: str) -> str:  # a directory out: the files it holds in ``source``
        inside = sorted(p for p in (source / path).rglob("*") if p.is_file())
        return " ".join(str(p.relative_to(source)) for p in inside) or path

    entry: dict = {"cmd": f"python write.py {' '.join(written(o.def_path) for o in stage.outs)}",
                   "deps": [], "params": []}
    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            entry["params"] += list(dep.params or [])
        else:
            entry["deps"].append(dep.def_path)
    outs = [{o.def_path: {"cache": o.use_cache}} for o in stage.outs if not (o.metric or o.plot)]
    metrics = [{o.def_path: {"cache": o.use_cache}} for o in stage.outs if o.metric]
    plots = [{o.def_path: {"cache": o.use_cache}} for o in stage.outs if o.plot]
    made.update(o.def_path for o in stage.outs)
    return {key: value for key, value in
            {**entry, "outs": outs, "metrics": metrics, "plots": plots}.items() if value}


def build(source: Path, target: Path) -> Path:
    """The minimal twin of ``source`` (a DVC repository) at ``target``, reproduced and
    committed, so that a ``dvc repro`` there is a no-op."""
    from dvc.repo import Repo

    made: set[str] = set()
    with Repo(str(source)) as repo:
        stages = {s.addressing.replace("@", "_"): _stage(s, source, made)
                  for s in repo.index.stages}
    target.mkdir(parents=True)
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            if dep not in made and "://" not in dep:
                path = target / dep / "in" if (source / dep).is_dir() else target / dep
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dep + "\n")
    shutil.copy(source / "params.yaml", target / "params.yaml")
    (target / "write.py").write_text(WRITE)
    (target / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    for command in (["git", "init", "-q"], ["git", "config", "user.name", "bench"],
                    ["git", "config", "user.email", "bench@nnpipe.invalid"],
                    [sys.executable, "-m", "dvc", "init", "-q"], ["dvc", "repro", "-q"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "minimal twin"]):
        subprocess.run(command, cwd=target, check=True, capture_output=True)
    return target
