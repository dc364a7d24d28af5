"""The command line of ``python -m fingerprint`` (see fingerprint/__init__.py)."""
from __future__ import annotations

import argparse
import json
import sys

import fingerprint
from fingerprint import kernels
from nnpipe.core import portable


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fingerprint", description=fingerprint.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=["record"],
                        help="record: profile training and the kernels, write fingerprint/ops.json")
    parser.add_argument("--compare", metavar="OTHER.json",
                        help="a fingerprint from another CPU: list the kernels that differ")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    portable.pin(True)
    if args.action == "record":
        from fingerprint import record

        record.write(record.record())
        print(f"wrote {record.OPS_FILE}")
        return
    mine = kernels.compute()
    if not args.compare:
        json.dump(mine, sys.stdout, indent=1, sort_keys=True)
        print()
        return
    with open(args.compare, encoding="utf-8") as handle:
        other = json.load(handle)
    differ, approximate, compared = fingerprint.compare(mine, other)
    print(f"{compared} kernels compared with {args.compare}: {len(differ)} differ"
          + (f" ({', '.join(differ)})" if differ else "")
          + f"; approximate kernels (used by no stage) differing: {len(approximate)}")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
