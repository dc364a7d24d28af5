"""The command line of ``python -m sweep`` (see sweep/__init__.py)."""
from __future__ import annotations

import argparse
import os

import sweep
from nnpipe.core import cli
from nnpipe.core.errors import PipelineError
from sweep import driver


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sweep",
                                     description=sweep.__doc__.split("\n\n")[0])
    parser.add_argument("-S", "--set-param", dest="sets", action="append", required=True,
                        metavar="[FILE:]KEY=VALUES", help="as dvc exp run -S; a,b,c makes a grid")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                        help="join this Ray cluster (HOST:PORT, ray://HOST:PORT, or auto: the "
                             "one `ray start` recorded here); default: RAY_ADDRESS, else a "
                             "local Ray of --jobs CPUs")
    parser.add_argument("--git-remote", default="origin")
    parser.add_argument("--dvc-remote", help="default: the repository's default DVC remote")
    parser.add_argument("--metric", default="torch_mlp.test.f1",
                        help="MODEL.SPLIT.NAME or MODEL.test_acc, as evaluate writes them")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    os.environ.pop("RAY_ADDRESS", None)  # the address is args.address: Ray must not override it
    with cli.stage("sweep") as log:
        if args.jobs < 1:
            raise PipelineError(f"--jobs {args.jobs}: must be at least 1")
        options = driver.Options(args.address, args.jobs, args.metric)
        try:
            code = driver.sweep(args.sets, args.git_remote, args.dvc_remote, options, log)
        except KeyboardInterrupt:
            log.info("interrupted: running trials cancelled and their clones removed; "
                     "a Ray this sweep started is stopped")
            code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    cli.run_command(main)
