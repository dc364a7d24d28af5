"""train_numpy_mlp: the lesson's MLP from scratch in NumPy (hand-written backprop, no torch)."""
from __future__ import annotations

from nnpipe import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    args = cli.training_parser(__doc__).parse_args(argv)
    with cli.stage("train_numpy_mlp") as log:
        p = params.load(args.params, "seed", "math", "train_numpy_mlp")
        portable.pin(p.math.portable)
        import numpy as np  # numpy/torch load here, after pinning
        from nnpipe import history, files, models, numpy_mlp, preprocess
        hp = p.train_numpy_mlp
        state = preprocess.load(args.preprocess)
        spec = models.ModelSpec(name="numpy_mlp", kind="mlp", framework="numpy",
                                input_dim=len(state.features), hidden_dim=hp.hidden_dim,
                                num_classes=len(state.classes))
        data = history.load_train_data(args.train, args.val, state.class_weights, spec.input_dim)
        rng = np.random.RandomState(p.seed)
        config = numpy_mlp.MLPConfig(spec.input_dim, spec.hidden_dim, spec.num_classes)
        model = numpy_mlp.NumpyMLP.init(config, hp.init_scale, rng)
        hist = numpy_mlp.train(model, data, hp.lr, hp.epochs, hp.batch_size, rng,
                               hp.log_every, "train_numpy_mlp")
        history.check_finite_arrays(model.params, "train_numpy_mlp")
        models.save(args.model_dir, spec, model.params, state)
        files.write_text(args.curves, hist.to_csv())
        log.info("final val_acc %.4f -> %s", hist.last()["val_acc"], args.model_dir)


if __name__ == "__main__":
    cli.run_command(main)
