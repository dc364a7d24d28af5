"""overfit_random: an MLP with 2*N*C + D hidden units memorizes uniform random data."""
from __future__ import annotations

import argparse

from nnpipe import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data-out", nargs=3, required=True, metavar=("TRAIN", "VAL", "TEST"),
                        help="its standardized splits (.npz: X, y)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--curves", required=True)
    args = parser.parse_args(argv)
    with cli.stage("overfit_random") as log:
        p = params.load(args.params, "seed", "math", "overfit_random", "split")
        portable.pin(p.math.portable)
        from nnpipe import history, files, overfit, training  # numpy/torch load here, after pinning
        from nnpipe.models import ModelSpec
        hp = p.overfit_random
        sizes = (p.split.train_size, p.split.val_size, p.split.test_size)
        made = overfit.make(hp.samples_per_class, hp.num_classes, hp.num_features, sizes, p.seed)
        widths = overfit.hidden_dims(hp.hidden_dims, hp.samples_per_class, hp.num_classes,
                                     hp.num_features)
        spec = ModelSpec(name="overfit_random", kind="mlp", input_dim=hp.num_features,
                         hidden_dims=widths, num_classes=hp.num_classes,
                         dropout_p=hp.dropout_p, init=hp.init)
        (X_train, y_train), (X_val, y_val) = made.splits["train"], made.splits["val"]
        data = history.TrainData(X_train, y_train, X_val, y_val,
                                 made.preprocessor.class_weights)
        config = training.TrainConfig(hp.lr, hp.epochs, hp.batch_size, p.seed,
                                      hp.log_every, "overfit_random")
        model, hist = training.fit(spec, data, config)
        for path, name in zip(args.data_out, ("train", "val", "test")):
            X, y = made.splits[name]
            files.write_npz(path, {"X": X, "y": y})
        training.save(args.model_dir, spec, model, made.preprocessor)
        files.write_text(args.curves, hist.to_csv())
        log.info("hidden_dims %s, final train_acc %.3f, val_acc %.3f -> %s", list(widths),
                 hist.last()["train_acc"], hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    cli.run_command(main)
