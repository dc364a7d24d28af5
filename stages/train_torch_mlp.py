"""train_torch_mlp: the lesson's ReLU MLP in torch (optional dropout and Xavier init)."""
from __future__ import annotations

from nnpipe import cli, history, io, params, preprocess, training
from nnpipe.models import ModelSpec


def main(argv: list[str] | None = None) -> None:
    args = cli.training_parser(__doc__).parse_args(argv)
    with cli.stage("train_torch_mlp") as log:
        p = params.load(args.params, "seed", "train_torch_mlp")
        hp = p.train_torch_mlp
        state = preprocess.load(args.preprocess)
        spec = ModelSpec(name="torch_mlp", kind="mlp", framework="torch",
                         input_dim=len(state.features), hidden_dim=hp.hidden_dim,
                         num_classes=len(state.classes), dropout_p=hp.dropout_p, init=hp.init)
        data = history.load_train_data(args.train, args.val, state.class_weights, spec.input_dim)
        config = training.TrainConfig(hp.lr, hp.epochs, hp.batch_size, p.seed,
                                      hp.log_every, "train_torch_mlp")
        model, hist = training.fit(spec, data, config)
        training.save(args.model_dir, spec, model, state)
        io.write_text(args.curves, hist.to_csv())
        log.info("final val_acc %.4f -> %s", hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    main()
