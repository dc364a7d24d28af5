"""scale_encode: imputer, StandardScaler and OneHotEncoder fit on train, by the schema's types;
the transformed splits as .npz."""
from __future__ import annotations

import argparse

from nnpipe import params
from nnpipe.core import cli, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--schema", required=True, help="the schema (JSON) fetch wrote")
    parser.add_argument("--splits", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="typed splits (Parquet) written by split")
    parser.add_argument("--out", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help=".npz files with X (N, D) float64 and y (N,) int64")
    parser.add_argument("--state", required=True, help="imputer/scaler/encoder state JSON")
    args = parser.parse_args(argv)
    with cli.stage("scale_encode") as log:
        p = params.load(args.params, "math", "data")
        portable.pin(p.math.portable)
        import numpy as np  # numpy/torch load here, after pinning
        from nnpipe import preprocess, schema
        from nnpipe.core import files, tables
        typed = schema.load(args.schema)
        features, target = typed.names, typed.target
        splits = [tables.read_parquet(path, (*features, target)) for path in args.splits]
        ys = [schema.class_codes(table[target], typed.classes, path).astype(np.int64)
              for path, table in zip(args.splits, splits)]
        frames = [tables.to_frame(table, features) for table in splits]
        state = preprocess.fit(frames[0], np.asarray(typed.classes)[ys[0]], features,
                               rows=sum(len(frame) for frame in frames),
                               categorical=typed.categorical, missing=p.data.missing,
                               handle_unknown=p.data.handle_unknown, classes=typed.classes,
                               source=args.splits[0])
        processed = [{"X": state.transform(frame, lambda row, name, source=source:
                                           f"{source}: column '{name}' row {row + 1}"), "y": y}
                     for source, frame, y in zip(args.splits, frames, ys)]  # checked, then written
        for path, arrays in zip(args.out, processed):
            files.write_npz(path, arrays)
        preprocess.save(args.state, state)
        log.info("%d inputs (%d categorical) -> %d features, classes %s (train rows %s)",
                 len(features), len(typed.categorical), len(state.features),
                 list(state.classes), list(state.class_counts))


if __name__ == "__main__":
    cli.run_command(main)
