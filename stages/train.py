"""train: one model of the registry, of a trainer kind (linear, numpy_mlp, torch_mlp).

dvc.yaml's ``train`` stage runs this once per model with ``--name NAME --kind KIND``; the
hyperparameters come from params.yaml's section ``train_NAME``, validated as that kind.
"""
from __future__ import annotations

from nnpipe import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    parser = cli.training_parser(__doc__)
    parser.add_argument("--name", required=True, help="the model's name (models/NAME)")
    parser.add_argument("--kind", required=True, choices=sorted(params.TRAINERS))
    args = parser.parse_args(argv)
    section = f"train_{args.name}"
    with cli.stage(section) as log:
        p = params.load(args.params, "seed", "math", section, kinds={section: args.kind})
        portable.pin(p.math.portable)
        from nnpipe import trainers  # numpy/torch load here, after pinning
        paths = trainers.StagePaths(args.train, args.val, args.preprocess, args.model_dir,
                                    args.curves)
        hist = trainers.run_stage(args.kind, args.name, section, p[section], p.seed, paths)
        log.info("final val_acc %.4f -> %s", hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    cli.run_command(main)
