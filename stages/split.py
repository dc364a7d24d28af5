"""split: seeded, shuffled, stratified train/val/test split of the fetched CSV.

With ``data.missing: drop`` the rows with a missing feature cell are removed first.
"""
from __future__ import annotations

import argparse

from nnpipe.core import cli, params, portable
from nnpipe.core.errors import PipelineError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        target, features = p.data.target, list(p.data.features)
        # Every column as text: the rows are written back as fetch wrote them.
        frame = files.read_csv(args.data, text_columns=(target, *features))
        absent = [c for c in (target, *features) if c not in frame.columns]
        if absent:
            raise PipelineError(f"{args.data}: column '{absent[0]}' not found; re-run fetch")
        where = args.data
        if p.data.missing == "drop":
            kept = frame.dropna(subset=features)
            where = (f"{args.data} (after data.missing=drop removed {len(frame) - len(kept)} "
                     "rows with missing cells)")
            lost = sorted(set(frame[target]) - set(kept[target]))
            if lost:
                raise PipelineError(f"{where}: class '{lost[0]}' has no row left")
            frame = kept
        labels = frame[target].astype(str).to_numpy()
        s = p.split
        parts = split.stratified_split(labels, s.train_size, s.val_size, s.test_size,
                                       p.seed, source=where)
        for path, rows in zip((args.train, args.val, args.test), parts):
            files.write_csv(path, frame.iloc[rows])
        log.info("train/val/test = %d/%d/%d rows%s", *(len(rows) for rows in parts),
                 where[len(args.data):])


if __name__ == "__main__":
    cli.run_command(main)
