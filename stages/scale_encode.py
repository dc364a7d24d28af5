"""scale_encode: imputer, StandardScaler, OneHotEncoder and LabelEncoder fit on train; the
transformed splits as .npz."""
from __future__ import annotations

import argparse

from nnpipe.core import cli, params, portable
from nnpipe.core.errors import PipelineError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--splits", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="split CSVs written by split")
    parser.add_argument("--out", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help=".npz files with X (N, D) float64 and y (N,) int64")
    parser.add_argument("--state", required=True, help="imputer/scaler/encoder state JSON")
    args = parser.parse_args(argv)
    with cli.stage("scale_encode") as log:
        p = params.load(args.params, "math", "data")
        portable.pin(p.math.portable)
        import numpy as np  # numpy/torch load here, after pinning
        from nnpipe import preprocess
        from nnpipe.core import files
        features, target = list(p.data.features), p.data.target
        frames = [files.read_csv(path, text_columns=(target, *p.data.categorical))
                  for path in args.splits]
        for path, frame in zip(args.splits, frames):
            missing = [c for c in [*features, target] if c not in frame.columns]
            if missing:
                raise PipelineError(f"{path}: column '{missing[0]}' not found; re-run fetch")
        categorical = preprocess.categorical_columns(frames, features, p.data.categorical)
        train = frames[0]
        state = preprocess.fit_frame(train, features, categorical,
                                     train[target].astype(str).to_numpy(), p.data.missing,
                                     p.data.handle_unknown,
                                     rows=sum(len(frame) for frame in frames),
                                     source=args.splits[0])
        processed = [{"X": state.transform(frame, lambda row, name, source=source:
                                           f"{source}: column '{name}' row {row + 2}"),
                      "y": state.encode(frame[target].astype(str).to_numpy())}
                     for source, frame in zip(args.splits, frames)]  # all checked, then written
        for path, arrays in zip(args.out, processed):
            files.write_npz(path, arrays)
        preprocess.save(args.state, state)
        log.info("%d inputs (%d categorical) -> %d features, classes %s, class weights %s",
                 len(features), len(categorical), len(state.features), list(state.classes),
                 np.round(state.class_weights, 6).tolist())


if __name__ == "__main__":
    cli.run_command(main)
