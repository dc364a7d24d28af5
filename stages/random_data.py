"""random_data: the lesson's uniform random data for overfit_random, split and standardized."""
from __future__ import annotations

from nnpipe import overfit, preprocess
from nnpipe.core import files

PARAMS = ("random_data", "seed", "split.train_size", "split.val_size", "split.test_size")


def add_arguments(parser) -> None:
    parser.add_argument("--out", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="standardized splits (.npz: X (N, D) float64, y (N,) int64)")
    parser.add_argument("--state", required=True, help="preprocessing state JSON")


def run(args, p) -> str:
    hp = p.random_data
    sizes = (p.split.train_size, p.split.val_size, p.split.test_size)
    made = overfit.make(hp.samples_per_class, hp.num_classes, hp.num_features, sizes, p.seed)
    for path, name in zip(args.out, ("train", "val", "test")):
        X, y = made.splits[name]
        files.write_npz(path, {"X": X, "y": y})
    preprocess.save(args.state, made.preprocessor)
    return (f"{made.preprocessor.rows} rows, {hp.num_features} features, {hp.num_classes} "
            f"classes -> {args.state}")
