"""scale_encode: imputer, StandardScaler and OneHotEncoder fit on train, by the schema's types;
the transformed splits as .npz."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nnpipe import preprocess, schema
from nnpipe.core import files, tables

PARAMS = ("data.missing", "data.handle_unknown")


def add_arguments(parser) -> None:
    parser.add_argument("--schema", required=True, help="the schema (JSON) fetch wrote")
    parser.add_argument("--splits", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="typed splits (Parquet) written by split")
    parser.add_argument("--out", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help=".npz files with X (N, D) float64 and y (N,) int64")
    parser.add_argument("--state", required=True, help="imputer/scaler/encoder state JSON")


def run(args, p) -> str:
    """The splits are read side by side and, once all three are transformed (and checked),
    their .npz written side by side: Arrow's reads and the file writes let go of the GIL."""
    typed = schema.load(args.schema)
    features, target = typed.names, typed.target
    with ThreadPoolExecutor(2) as io:
        splits = list(io.map(lambda path: tables.read_parquet(path, (*features, target)),
                             args.splits))
        ys = [schema.class_codes(table[target], typed.classes, path).astype(np.int64)
              for path, table in zip(args.splits, splits)]
        frames = [tables.to_frame(table, features) for table in splits]
        state = preprocess.fit(frames[0], ys[0], features,
                               rows=sum(len(frame) for frame in frames),
                               categorical=typed.categorical, missing=p.data.missing,
                               handle_unknown=p.data.handle_unknown, classes=typed.classes,
                               source=args.splits[0])
        processed = [state.transform(frame, lambda row, name, source=source:
                                     f"{source}: column '{name}' row {row + 1}")
                     for source, frame in zip(args.splits, frames)]  # all checked, then written
        written = [io.submit(files.write_npz, path, {"X": X, "y": y})
                   for path, X, y in zip(args.out, processed, ys)]
        for done in written:
            done.result()
    preprocess.save(args.state, state)
    return (f"{len(features)} inputs ({len(typed.categorical)} categorical) -> "
            f"{len(state.features)} features, classes {list(state.classes)} "
            f"(train rows {list(state.class_counts)})")
