"""split: seeded, shuffled, stratified train/val/test split of the typed table."""
from __future__ import annotations

import argparse

from nnpipe import params
from nnpipe.core import cli, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="typed table (Parquet) written by fetch")
    parser.add_argument("--schema", required=True, help="its schema (JSON)")
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True)
    args = parser.parse_args(argv)
    with cli.stage("split") as log:
        p = params.load(args.params, "seed", "math", "split")
        portable.pin(p.math.portable)
        from nnpipe import schema, split
        from nnpipe.core import tables  # numpy/torch load here, after pinning
        typed = schema.load(args.schema)
        table = tables.read_parquet(args.data, (*typed.names, typed.target))
        codes = schema.class_codes(table[typed.target], typed.classes, args.data)
        s = p.split
        parts = split.stratified_split(codes, s.train_size, s.val_size, s.test_size, p.seed,
                                       source=args.data, classes=typed.classes)
        for path, rows in zip((args.train, args.val, args.test), parts):
            tables.write_parquet(path, table.take(rows))
        log.info("train/val/test = %d/%d/%d rows", *(len(rows) for rows in parts))


if __name__ == "__main__":
    cli.run_command(main)
