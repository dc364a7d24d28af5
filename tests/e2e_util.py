"""Helpers for tests that drive the real `dvc` CLI in a temporary copy of the repository."""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess

from deps import ROOT


def with_changes(p: dict, changes: dict) -> dict:
    """A deep copy of params ``p`` with ``{"section.key": value}`` set (or added)."""
    p = copy.deepcopy(p)
    for dotted, value in changes.items():
        *sections, key = dotted.split(".")
        node = p
        for name in sections:
            node = node[name]
        node[key] = value
    return p


def run(cwd, *args, check=True):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NNPIPE_DEBUG", None)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def copy_repo(target) -> None:
    """Tracked and untracked-but-not-ignored files, as a fresh clone plus the work tree."""
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard", "-z").stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    run(target, "git", "init", "-q", "-b", "main")
    run(target, "git", "config", "user.name", "nnpipe tests")
    run(target, "git", "config", "user.email", "tests@nnpipe.invalid")
    run(target, "git", "add", "-A")
    run(target, "git", "commit", "-qm", "copy")
