"""train_torch_mlp: the lesson's ReLU MLP in torch (optional dropout and Xavier init)."""
from __future__ import annotations

from nnpipe import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    args = cli.training_parser(__doc__).parse_args(argv)
    with cli.stage("train_torch_mlp") as log:
        p = params.load(args.params, "seed", "math", "train_torch_mlp")
        portable.pin(p.math.portable)
        from nnpipe import training  # numpy/torch load here, after pinning
        hp = p.train_torch_mlp
        paths = training.StagePaths(args.train, args.val, args.preprocess, args.model_dir,
                                    args.curves)
        hist = training.run_stage("train_torch_mlp", "torch_mlp", "mlp", hp, p.seed, paths,
                                  dropout_p=hp.dropout_p, init=hp.init)
        log.info("final val_acc %.4f -> %s", hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    cli.run_command(main)
