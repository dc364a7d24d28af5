"""nnpipe.overfit: the lesson's random data, and the demonstration that an MLP overfits it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deps import ROOT
from nnpipe import history, overfit, training
from nnpipe.core import params
from nnpipe.models import ModelSpec

SIZES = (0.7, 0.15, 0.15)


def test_hidden_dims_auto_is_one_layer_of_two_n_c_plus_d():
    assert overfit.hidden_dims("auto", 50, 3, 2) == (302,)
    assert overfit.hidden_dims("auto", 10, 4, 5) == (85,)
    assert overfit.hidden_dims((64,), 50, 3, 2) == (64,)
    assert overfit.hidden_dims([64, 32], 50, 3, 2) == (64, 32)


def test_make_splits_stratified_and_scales_on_train_only():
    made = overfit.make(50, 3, 2, SIZES, seed=7)
    sizes = {name: len(y) for name, (_, y) in made.splits.items()}
    assert sizes == {"train": 105, "val": 22, "test": 23}  # the lesson's shapes
    X_train, y_train = made.splits["train"]
    assert np.bincount(y_train).tolist() == [35, 35, 35]
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=1e-12)
    assert made.preprocessor.classes == ("0", "1", "2")


def test_make_is_a_function_of_the_seed():
    first, again, other = (overfit.make(50, 3, 2, SIZES, s) for s in (3, 3, 4))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[name][0], again.splits[name][0])
    assert not np.array_equal(first.splits["train"][0], other.splits["train"][0])


def _gap(hp, seed: int) -> float:
    """Eval-mode train accuracy minus test accuracy after training with ``hp``."""
    made = overfit.make(hp.samples_per_class, hp.num_classes, hp.num_features, SIZES, seed)
    spec = ModelSpec("overfit_random", "mlp", hp.num_features,
                     overfit.hidden_dims(hp.hidden_dims, hp.samples_per_class, hp.num_classes,
                                         hp.num_features),
                     hp.num_classes, dropout_p=hp.dropout_p, init=hp.init)
    (X_train, y_train), (X_val, y_val) = made.splits["train"], made.splits["val"]
    data = history.TrainData(X_train, y_train, X_val, y_val, made.preprocessor.class_weights)
    model, _ = training.fit(spec, data, training.TrainConfig(
        hp.lr, hp.epochs, hp.batch_size, seed, 10**9, "overfit_random"))
    model.eval()
    with torch.no_grad():
        def accuracy(split: str) -> float:
            X, y = made.splits[split]
            predicted = model(torch.as_tensor(X, dtype=torch.float32)).argmax(dim=1).numpy()
            return float(np.mean(predicted == y))
        return accuracy("train") - accuracy("test")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_params_overfit_whatever_the_seed(seed):
    """The demonstration does not hinge on seed 1234: train beats test by >= 0.3 at other seeds.

    (With the lesson's dropout_p 0.1 it did on only 25 of 40 seeds; see README.)
    """
    hp = params.load(str(ROOT / "params.yaml"), "overfit_random").overfit_random
    assert _gap(hp, seed) >= 0.3
