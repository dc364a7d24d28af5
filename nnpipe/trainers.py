"""The trainer kinds: how one training section of params.yaml becomes a model directory.

A kind is code, a model is data. The kinds (the keys of nnpipe.params.TRAINERS) are
``linear`` (the lesson's linear model, in torch), ``numpy_mlp`` (the MLP from scratch in
NumPy) and ``torch_mlp`` (the MLP in torch); each takes ``hidden_dims``, so depth and width
are params. A model is a name, a params section ``train_<name>`` validated as its kind, and
its entry in dvc.yaml's ``train`` stage: a variant of a kind needs no Python.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nnpipe import files, history, models, params, preprocess
from nnpipe.history import History, TrainData


class StagePaths(NamedTuple):
    """A training stage's inputs (processed splits, scaler/encoder state) and outputs."""
    train: str
    val: str
    preprocess: str
    model_dir: str
    curves: str


def spec_for(kind: str, name: str, hp: Any, input_dim: int, num_classes: int) -> models.ModelSpec:
    """The architecture a section of kind ``kind`` describes (``hp``: the validated section)."""
    return models.ModelSpec(name=name, kind="linear" if kind == "linear" else "mlp",
                            input_dim=input_dim, hidden_dims=hp.hidden_dims,
                            num_classes=num_classes, dropout_p=getattr(hp, "dropout_p", 0.0),
                            init=getattr(hp, "init", "default"))


def run_stage(kind: str, name: str, section: str, hp: Any, seed: int,
              paths: StagePaths) -> History:
    """Train model ``name`` of ``kind`` on the processed splits; write its directory and curves.

    ``section`` names the params section ``hp`` came from, for log lines and errors.
    """
    if kind not in params.TRAINERS:
        raise ValueError(f"unknown trainer kind {kind!r}")
    state = preprocess.load(paths.preprocess)
    spec = spec_for(kind, name, hp, len(state.features), len(state.classes))
    data = history.load_train_data(paths.train, paths.val, state.class_weights, spec.input_dim)
    if kind == "numpy_mlp":
        weights, hist = _fit_numpy(spec, data, hp, seed, section)
        models.save(paths.model_dir, spec, weights, state)
    else:
        from nnpipe import training  # torch loads only for the torch kinds

        config = training.TrainConfig(hp.lr, hp.epochs, hp.batch_size, seed, hp.log_every,
                                      section)
        module, hist = training.fit(spec, data, config)
        training.save(paths.model_dir, spec, module, state)
    files.write_text(paths.curves, hist.to_csv())
    return hist


def _fit_numpy(spec: models.ModelSpec, data: TrainData, hp: Any, seed: int,
               section: str) -> tuple[dict[str, np.ndarray], History]:
    """The lesson's NumPy training: ``init_scale * randn`` weights, plain gradient descent."""
    from nnpipe import numpy_mlp

    rng = np.random.RandomState(seed)
    model = numpy_mlp.NumpyMLP.init(spec.layer_dims, hp.init_scale, rng)
    hist = numpy_mlp.train(model, data, hp.lr, hp.epochs, hp.batch_size, rng, hp.log_every,
                           section)
    history.check_finite_arrays(model.params, section)
    return model.params, hist
