"""One training path for every model: its params section in, its weights and curves out.

A model is data: a section ``train_<model>`` of params.yaml (validated by nnpipe.core.params)
names its ``backend``, ``activation`` and ``hidden_dims``. This is the one place a backend
maps to code: ``numpy`` is the lesson's MLP written by hand (nnpipe.numpy_mlp: its init and
plain gradient descent), ``torch`` the same architecture in torch (nnpipe.torch_models:
torch.optim.Adam). torch is imported only for a torch model.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from nnpipe import models, numpy_mlp
from nnpipe.core.errors import PipelineError
from nnpipe.core.params import ModelParams
from nnpipe.preprocess import Preprocessor, TrainData


class Fitted(NamedTuple):
    """A trained model: its architecture, weights (W1, b1, ..., as float64) and curves."""
    spec: models.ModelSpec
    weights: dict[str, np.ndarray]
    history: models.History


def spec_for(name: str, hp: ModelParams, state: Preprocessor) -> models.ModelSpec:
    """The architecture section ``hp`` describes for data of ``state``'s D features and C
    classes (``hidden_dims: auto`` resolved against the data set's rows)."""
    return models.ModelSpec(name=name, backend=hp.backend, activation=hp.activation,
                            input_dim=len(state.features),
                            hidden_dims=hp.widths(state.rows, len(state.features),
                                                  f"train_{name}"),
                            num_classes=len(state.classes))


def class_weights(policy: str, counts: Sequence[int]) -> np.ndarray | None:
    """The loss's weight per class (C,) from the train split's class ``counts``: ``balanced``
    is scikit-learn's N / (C * count) (the lesson's 1/count, scaled so that equal classes weigh
    exactly 1: the loss, and every byte trained, is then the unweighted one), ``none`` is no
    weighting."""
    if policy == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    return counts.sum() / (len(counts) * counts)


def fit(name: str, hp: ModelParams, state: Preprocessor, data: TrainData, seed: int) -> Fitted:
    """Train model ``name`` as its section says; refuse weights that are not finite."""
    spec = spec_for(name, hp, state)
    data = data._replace(class_weights=class_weights(hp.class_weight, state.class_counts))
    log_name = f"train_{name}"
    if spec.backend == "numpy":
        rng = np.random.RandomState(seed)
        model = numpy_mlp.NumpyMLP.init(spec.layer_dims, hp.init_scale, rng, spec.activation)
        history = numpy_mlp.train(model, data, hp.lr, hp.epochs, hp.batch_size, rng,
                                  hp.log_every, log_name, hp.keep, hp.patience)
        weights = model.params
    else:
        from nnpipe import torch_models  # torch loads only for a torch model

        torch_models.make_deterministic(seed)
        module = torch_models.build(spec, hp.dropout_p, hp.init)
        config = torch_models.TrainConfig(hp.lr, hp.epochs, hp.batch_size, seed, hp.log_every,
                                          log_name, hp.keep, hp.patience)
        history = torch_models.train(module, data, config)
        weights = torch_models.export_weights(module)
    for key, array in weights.items():
        if not np.all(np.isfinite(array)):
            raise PipelineError(f"{log_name}: weights {key} are not finite after training; "
                                "lower the learning rate")
    return Fitted(spec, weights, history)
