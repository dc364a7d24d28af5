"""split: seeded, shuffled, stratified train/val/test split of the typed table."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
    """The draws run here on the labels alone (NumPy's legacy shuffles hold the GIL); two
    more threads read the whole table, then take and write each part as soon as it is
    drawn (Arrow, without the GIL): train while the rest is drawn, val and test beside it."""
    typed = schema.load(args.schema)
    s, written, sizes = p.split, [], []
    with ThreadPoolExecutor(2) as io:
        table = io.submit(tables.read_parquet, args.data, (*typed.names, typed.target))
        labels = tables.read_parquet(args.data, (typed.target,))[typed.target]
        codes = schema.class_codes(labels, typed.classes, args.data)
        parts = split.split_rows(codes, s.train_size, s.val_size, s.test_size, p.seed,
                                 source=args.data, classes=typed.classes)
        for path, rows in zip((args.train, args.val, args.test), parts):
            written.append(io.submit(lambda path, rows: tables.write_parquet(
                path, table.result().take(rows)), path, rows))
            sizes.append(len(rows))
        for part in written:  # the first error, in train, val, test order
            part.result()
    return "train/val/test = {}/{}/{} rows".format(*sizes)
