"""One training path for every model: its params section in, its weights and curves out.

A model is data: a section ``train_<model>`` of params.yaml (nnpipe.architecture)
names its ``backend``, ``activation`` and ``hidden_dims``. This is the one place a backend
maps to code (``BACKENDS``, one fit function each): ``numpy`` is the lesson's MLP written by
hand (nnpipe.numpy_mlp: its init and plain gradient descent), ``torch`` the same architecture
in torch (nnpipe.torch_models: torch.optim.Adam), ``sklearn`` scikit-learn's
LogisticRegression, the reference a linear model is checked against, stored as the same W1,
b1. torch is imported only for a torch model.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from nnpipe import models, numpy_mlp
from nnpipe.architecture import MAX_WIDTH, ModelParams
from nnpipe.core import files
from nnpipe.core.errors import PipelineError
from nnpipe.preprocess import Preprocessor, TrainData

log = logging.getLogger(__name__)


class Fitted(NamedTuple):
    """A trained model: its architecture, weights (W1, b1, ..., as float64) and curves."""
    spec: models.ModelSpec
    weights: dict[str, np.ndarray]
    history: models.History


def hidden_widths(hidden_dims: Any, rows: int, features: int, section: str) -> tuple[int, ...]:
    """The hidden widths for a data set of ``rows`` rows and ``features`` input features:
    ``auto`` is one layer of 2 * rows + features units (the lesson's rule for a model that
    memorizes its data), at most MAX_WIDTH."""
    if hidden_dims != "auto":
        return tuple(hidden_dims)
    width = 2 * rows + features
    if width > MAX_WIDTH:
        raise PipelineError(f"{section}.hidden_dims=auto gives 2*{rows}+{features}={width} "
                            f"hidden units for a data set of {rows} rows, at most {MAX_WIDTH}: "
                            "give a list of widths")
    return (width,)


def spec_for(name: str, hp: ModelParams, state: Preprocessor) -> models.ModelSpec:
    """The architecture section ``hp`` describes for data of ``state``'s D features and C
    classes (``hidden_dims: auto`` resolved against the data set's rows)."""
    features = len(state.features)
    return models.ModelSpec(name=name, backend=hp.backend, activation=hp.activation,
                            input_dim=features,
                            hidden_dims=hidden_widths(hp.hidden_dims, state.rows, features,
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
    weights, history = BACKENDS[spec.backend](spec, hp, data, seed, log_name)
    for key, array in weights.items():
        if not np.all(np.isfinite(array)):
            raise PipelineError(f"{log_name}: weights {key} are not finite after training; "
                                "lower the learning rate")
    return Fitted(spec, weights, history)


def _fit_numpy(spec: models.ModelSpec, hp: Any, data: TrainData, seed: int,
               log_name: str) -> tuple[dict[str, np.ndarray], models.History]:
    """The lesson's init and plain gradient descent (nnpipe.numpy_mlp)."""
    rng = np.random.RandomState(seed)
    model = numpy_mlp.NumpyMLP.init(spec.layer_dims, hp.init_scale, rng, spec.activation)
    history = numpy_mlp.train(model, data, hp.lr, hp.epochs, hp.batch_size, rng,
                              hp.log_every, log_name, hp.keep, hp.patience)
    return model.params, history


def _fit_torch(spec: models.ModelSpec, hp: Any, data: TrainData, seed: int,
               log_name: str) -> tuple[dict[str, np.ndarray], models.History]:
    """torch.optim.Adam on the same architecture (nnpipe.torch_models)."""
    from nnpipe import torch_models  # torch loads only for a torch model

    torch_models.make_deterministic(seed)
    module = torch_models.build(spec, hp.dropout_p, hp.init)
    config = torch_models.TrainConfig(hp.lr, hp.epochs, hp.batch_size, seed, hp.log_every,
                                      log_name, hp.keep, hp.patience)
    history = torch_models.train(module, data, config)
    return torch_models.export_weights(module), history


def _fit_sklearn(spec: models.ModelSpec, hp: Any, data: TrainData, seed: int,
                 log_name: str) -> tuple[dict[str, np.ndarray], models.History]:
    """scikit-learn's LogisticRegression (lbfgs, its default L2 penalty C=1, at most
    ``epochs`` iterations, the same class weights) as W1 (D, C), b1 (C,): softmax(X W1 + b1)
    is its predict_proba (two classes: sigmoid(z) is softmax([0, z])). Its history is one row:
    the fitted model's figures at its last iteration."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    weight = None if data.class_weights is None else dict(enumerate(data.class_weights))
    model = LogisticRegression(max_iter=hp.epochs, class_weight=weight, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data.X_train, data.y_train)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("%s: lbfgs did not converge in epochs=%d iterations; raise epochs",
                    log_name, hp.epochs)
    W, b = model.coef_.T, model.intercept_  # (D, K), (K,): K = 1 for two classes
    if spec.num_classes == 2:
        W, b = np.hstack([np.zeros_like(W), W]), np.concatenate([[0.0], b])
    weights = {"W1": np.asarray(W, np.float64), "b1": np.asarray(b, np.float64)}
    history = models.History(log_name)
    figures = [_figures(weights, X, y, data.class_weights)
               for X, y in ((data.X_train, data.y_train), (data.X_val, data.y_val))]
    history.add(int(model.n_iter_.max()) - 1, *figures[0], *figures[1])
    log.info(history.line(-1))
    return weights, history


def _figures(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray,
             class_weights: np.ndarray | None) -> tuple[float, float]:
    """(weighted cross-entropy, accuracy) of a one-layer model on ``X, y``."""
    scores = models.forward(weights, "identity", X)  # (N, C)
    loss, _ = numpy_mlp.softmax_cross_entropy(scores, y, class_weights)
    return loss, float((scores.argmax(axis=1) == y).mean())


# The one place a backend maps to code: backend -> fit(spec, section, data, seed, log name).
BACKENDS: dict[str, Callable[..., tuple[dict[str, np.ndarray], models.History]]] = {
    "numpy": _fit_numpy, "torch": _fit_torch, "sklearn": _fit_sklearn}


def load_train_data(train_path: str, val_path: str, state: Preprocessor) -> TrainData:
    """The processed train and val splits, checked against the state's D features."""
    X_train, y_train = files.read_xy(train_path)
    X_val, y_val = files.read_xy(val_path)
    for path, X in ((train_path, X_train), (val_path, X_val)):
        if X.shape[1] != len(state.features):
            raise PipelineError(f"{path}: has {X.shape[1]} features, the scaler state "
                                f"has {len(state.features)}; re-run the data stages")
    return TrainData(X_train, y_train, X_val, y_val)
