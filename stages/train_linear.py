"""train_linear: the lesson's linear model (two affine layers, no activation) in torch."""
from __future__ import annotations

from nnpipe import cli, history, io, params, preprocess, training
from nnpipe.models import ModelSpec


def main(argv: list[str] | None = None) -> None:
    args = cli.training_parser(__doc__).parse_args(argv)
    with cli.stage("train_linear") as log:
        p = params.load(args.params, "seed", "train_linear")
        hp = p.train_linear
        state = preprocess.load(args.preprocess)
        spec = ModelSpec(name="linear", kind="linear", framework="torch",
                         input_dim=len(state.features), hidden_dim=hp.hidden_dim,
                         num_classes=len(state.classes))
        data = history.load_train_data(args.train, args.val, state.class_weights, spec.input_dim)
        config = training.TrainConfig(hp.lr, hp.epochs, hp.batch_size, p.seed,
                                      hp.log_every, "train_linear")
        model, hist = training.fit(spec, data, config)
        training.save(args.model_dir, spec, model, state)
        io.write_text(args.curves, hist.to_csv())
        log.info("final val_acc %.4f -> %s", hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    main()
