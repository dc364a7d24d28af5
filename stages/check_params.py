"""check_params: validate every section of params.yaml, whenever the file changes.

DVC compares params values with Python's ==, so a value that equals the old one (1 for true,
1234.0 for 1234) re-runs no stage that reads it and would be recorded unchecked. This stage
depends on params.yaml's bytes (dvc.yaml), so it runs on any edit and refuses such a value in
one line. In a queued experiment's copy of the repository, a ``fetch.source`` that is not
there (a file never committed) is refused here, before DVC reaches fetch.
"""
from __future__ import annotations

import argparse
import os

from nnpipe import params, source
from nnpipe.core import cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with cli.stage("check_params") as log:
        checked = params.load_all(args.params)
        source.check_in_experiment(checked.fetch.source, os.getcwd())
        log.info("%s: every section valid (%d)", args.params, len(checked.names))


if __name__ == "__main__":
    cli.run_command(main)
