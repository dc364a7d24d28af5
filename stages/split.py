"""split: seeded, shuffled, stratified train/val/test split of the typed table."""
from __future__ import annotations

from nnpipe import schema, split
from nnpipe.core import tables

PARAMS = ("split", "seed")


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="typed table (Parquet) written by fetch")
    parser.add_argument("--schema", required=True, help="its schema (JSON)")
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True)


def run(args, p) -> str:
    typed = schema.load(args.schema)
    table = tables.read_parquet(args.data, (*typed.names, typed.target))
    codes = schema.class_codes(table[typed.target], typed.classes, args.data)
    s = p.split
    parts = split.stratified_split(codes, s.train_size, s.val_size, s.test_size, p.seed,
                                   source=args.data, classes=typed.classes)
    for path, rows in zip((args.train, args.val, args.test), parts):
        tables.write_parquet(path, table.take(rows))
    return "train/val/test = {}/{}/{} rows".format(*(len(rows) for rows in parts))
