"""split: seeded, shuffled, stratified train/val/test split of the fetched CSV."""
from __future__ import annotations

import argparse

from nnpipe.core import cli, params, portable
from nnpipe.core.errors import PipelineError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="CSV written by fetch")
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True)
    args = parser.parse_args(argv)
    with cli.stage("split") as log:
        p = params.load(args.params, "seed", "math", "split", "data")
        portable.pin(p.math.portable)
        from nnpipe import split
        from nnpipe.core import files  # numpy/torch load here, after pinning
        frame = files.read_csv(args.data, text_columns=(p.data.target,))
        if p.data.target not in frame.columns:
            raise PipelineError(f"{args.data}: column '{p.data.target}' not found; "
                                    "re-run fetch")
        labels = frame[p.data.target].astype(str).to_numpy()
        s = p.split
        parts = split.stratified_split(labels, s.train_size, s.val_size, s.test_size,
                                       p.seed, source=args.data)
        for path, rows in zip((args.train, args.val, args.test), parts):
            files.write_csv(path, frame.iloc[rows])
        log.info("train/val/test = %d/%d/%d rows", *(len(rows) for rows in parts))


if __name__ == "__main__":
    cli.run_command(main)
