"""check_params: validate every section of params.yaml, whenever the file changes.

DVC compares params values with Python's ==, so a value that equals the old one (1 for true,
1234.0 for 1234) re-runs no stage that reads it and would be recorded unchanged. This stage
depends on params.yaml's bytes (dvc.yaml), so it runs on any edit and refuses such a value in
one line. In a queued experiment's copy of the repository, a ``fetch.source`` that is not
there (a file never committed) is refused here, before DVC reaches fetch.
"""
from __future__ import annotations

import os

from nnpipe import params, source

PARAMS = ()  # it reads the whole file itself: dvc.yaml makes params.yaml a dep


def add_arguments(parser) -> None:
    pass


def run(args, p) -> str:
    checked = params.load_all(args.params)
    source.check_in_experiment(checked.fetch.source, os.getcwd())
    return f"{args.params}: every section valid ({len(checked.names)})"
