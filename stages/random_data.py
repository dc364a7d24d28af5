"""random_data: the lesson's uniform random data for overfit_random, split and standardized."""
from __future__ import annotations

import argparse

from nnpipe import params
from nnpipe.core import cli, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="standardized splits (.npz: X (N, D) float64, y (N,) int64)")
    parser.add_argument("--state", required=True, help="preprocessing state JSON")
    args = parser.parse_args(argv)
    with cli.stage("random_data") as log:
        p = params.load(args.params, "seed", "math", "random_data", "split")
        portable.pin(p.math.portable)
        from nnpipe import overfit, preprocess  # numpy/torch load here, after pinning
        from nnpipe.core import files
        hp = p.random_data
        sizes = (p.split.train_size, p.split.val_size, p.split.test_size)
        made = overfit.make(hp.samples_per_class, hp.num_classes, hp.num_features, sizes, p.seed)
        for path, name in zip(args.out, ("train", "val", "test")):
            X, y = made.splits[name]
            files.write_npz(path, {"X": X, "y": y})
        preprocess.save(args.state, made.preprocessor)
        log.info("%d rows, %d features, %d classes -> %s", made.preprocessor.rows,
                 hp.num_features, hp.num_classes, args.state)


if __name__ == "__main__":
    cli.run_command(main)
