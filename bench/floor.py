"""The in-process floor: every stage of dvc.yaml run by the stages' runner in ONE Python process.

Run from a repository root with no outputs yet: `python bench/floor.py`. It pays each import
once and does exactly the stages' work, with no orchestration (no DVC, no per-stage start-up).
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main() -> None:
    sys.path.insert(0, ".")
    from warmstart.record import stage_commands  # dvc.yaml's stages, as DVC expands them

    commands = stage_commands(Path("."))  # before the clock: DVC's resolver is orchestration
    start = time.perf_counter()
    run = importlib.import_module("stages.__main__").run  # the stages' runner, in-process
    for _, argv in commands:
        assert argv[:3] == ["python", "-m", "stages"], argv
        run(argv[3], argv[4:])
    print(f"floor: {time.perf_counter() - start:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
