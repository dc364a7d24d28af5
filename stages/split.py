"""split: seeded, shuffled, stratified train/val/test split of the typed table."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

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
    """The draws run here on the labels alone; a second thread reads the whole table, then
    takes and writes each part as soon as it is drawn (NumPy's shuffles and Arrow's coding
    both let go of the GIL, so the two overlap)."""
    typed = schema.load(args.schema)
    s, sizes = p.split, []
    with ThreadPoolExecutor(1) as io:
        last = table = io.submit(tables.read_parquet, args.data, (*typed.names, typed.target))
        labels = tables.read_parquet(args.data, (typed.target,))[typed.target]
        codes = schema.class_codes(labels, typed.classes, args.data)
        parts = split.split_rows(codes, s.train_size, s.val_size, s.test_size, p.seed,
                                 source=args.data, classes=typed.classes)
        for path, rows in zip((args.train, args.val, args.test), parts):
            last = io.submit(_write, path, table, rows, last)
            sizes.append(len(rows))
        last.result()
    return "train/val/test = {}/{}/{} rows".format(*sizes)


def _write(path: str, table: Future, rows, before: Future) -> None:
    before.result()  # the read, or the part before, failed: no later part is written
    tables.write_parquet(path, table.result().take(rows))
