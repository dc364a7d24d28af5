"""The in-process floor: every stage of dvc.yaml run by calling its main() in ONE Python process.

Run from a repository root with no outputs yet: `python bench/floor.py`. It pays each import
once and does exactly the stages' work, with no orchestration (no DVC, no per-stage start-up).
"""
from __future__ import annotations

import importlib
import shlex
import sys
import time

import yaml


def stage_commands(path: str = "dvc.yaml") -> list[tuple[str, list[str]]]:
    """(module, argv) of every stage in dvc.yaml's order (a topological order), as DVC's
    own resolver expands it (vars, foreach)."""
    from dvc.parsing import DataResolver
    from dvc.repo import Repo

    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    with Repo(".") as repo:
        stages = DataResolver(repo, repo.root_dir, document).resolve()["stages"]
    commands = []
    for stage in stages.values():
        words = shlex.split(stage["cmd"])
        assert words[:3] == ["python", "-m", "stages"], stage["cmd"]
        commands.append((f"stages.{words[3]}", words[4:]))
    return commands


def main() -> None:
    sys.path.insert(0, ".")
    start = time.perf_counter()
    run = importlib.import_module("stages.__main__").run  # the stages' runner, in-process
    for module, argv in stage_commands():
        run(module.split(".")[1], argv)
    print(f"floor: {time.perf_counter() - start:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
