"""nnpipe.overfit: the lesson's random data, and the demonstration that an MLP overfits it."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import REGISTRY, ROOT, STAGES
from nnpipe import models, overfit, training
from nnpipe import params
from nnpipe.preprocess import TrainData

SIZES = (0.7, 0.15, 0.15)
# The registry's models trained on the random data set (the random_data stage's outputs).
RANDOM_MODELS = sorted(m for m, d in REGISTRY.items()
                       if f"{d}/train.npz" in STAGES["random_data"].outs)


def test_make_random_data_shapes_and_range():
    X, y = overfit.make_random_data(50, 3, 4, np.random.RandomState(0))
    assert X.shape == (150, 4) and y.shape == (150,)
    assert X.min() >= 0.0 and X.max() < 1.0
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 50))
    X2, _ = overfit.make_random_data(50, 3, 4, np.random.RandomState(0))
    np.testing.assert_array_equal(X, X2)
    X3, _ = overfit.make_random_data(50, 3, 4, np.random.RandomState(1))
    assert not np.array_equal(X, X3)


def test_make_splits_stratified_and_scales_on_train_only():
    made = overfit.make(50, 3, 2, SIZES, seed=7)
    sizes = {name: len(y) for name, (_, y) in made.splits.items()}
    assert sizes == {"train": 105, "val": 22, "test": 23}  # the lesson's shapes
    X_train, y_train = made.splits["train"]
    assert np.bincount(y_train).tolist() == [35, 35, 35]
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=1e-12)
    assert made.preprocessor.classes == ("0", "1", "2")
    assert made.preprocessor.features == ("X1", "X2")


def test_make_records_the_whole_data_sets_rows_for_hidden_dims_auto():
    made = overfit.make(50, 3, 4, SIZES, seed=7)
    assert made.preprocessor.rows == 150  # N * C, all splits: auto = 2 * 150 + D
    assert made.preprocessor.scaler.n_samples_seen == 105  # the scaler saw train only
    assert all(X.shape[1] == 4 for X, _ in made.splits.values())


def test_make_is_a_function_of_the_seed():
    first, again, other = (overfit.make(50, 3, 2, SIZES, s) for s in (3, 3, 4))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[name][0], again.splits[name][0])
    assert not np.array_equal(first.splits["train"][0], other.splits["train"][0])


def test_the_registry_trains_a_model_on_the_random_data():
    assert RANDOM_MODELS, "no model of dvc.yaml's registry trains on random_data's splits"


def _gap(name: str, seed: int) -> float:
    """Train accuracy minus test accuracy (inference as evaluate computes it) of registry
    model ``name`` trained as params.yaml says on the random data of ``seed``."""
    p = params.load(str(ROOT / "params.yaml"), "random_data", f"train_{name}")
    made = overfit.make(p.random_data.samples_per_class, p.random_data.num_classes,
                        p.random_data.num_features, SIZES, seed)
    (X_train, y_train), (X_val, y_val) = made.splits["train"], made.splits["val"]
    data = TrainData(X_train, y_train, X_val, y_val)  # training.fit gives it its weights
    fitted = training.fit(name, p[f"train_{name}"], made.preprocessor, data, seed)

    def accuracy(split: str) -> float:
        X, y = made.splits[split]
        predicted = models.predict_proba(fitted.spec, fitted.weights, X).argmax(axis=1)
        return float(np.mean(predicted == y))
    return accuracy("train") - accuracy("test")


@pytest.mark.parametrize("name", RANDOM_MODELS)
@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2, 3))])
def test_default_params_overfit_whatever_the_seed(name, seed):
    """The demonstration does not hinge on seed 1234: train beats test by >= 0.3 at other seeds
    (one seed in the quick loop, the others with the slow tests).

    (With the lesson's dropout_p 0.1 it did on only 25 of 40 seeds; see README.)
    """
    assert _gap(name, seed) >= 0.3
