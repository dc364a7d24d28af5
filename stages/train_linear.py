"""train_linear: the lesson's linear model (two affine layers, no activation) in torch."""
from __future__ import annotations

from nnpipe import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    args = cli.training_parser(__doc__).parse_args(argv)
    with cli.stage("train_linear") as log:
        p = params.load(args.params, "seed", "math", "train_linear")
        portable.pin(p.math.portable)
        from nnpipe import training  # numpy/torch load here, after pinning
        paths = training.StagePaths(args.train, args.val, args.preprocess, args.model_dir,
                                    args.curves)
        hist = training.run_stage("train_linear", "linear", "linear", p.train_linear, p.seed,
                                  paths)
        log.info("final val_acc %.4f -> %s", hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    cli.run_command(main)
