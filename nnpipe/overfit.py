"""overfit_random's data: the lesson's uniform random features, its own split and scaler."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nnpipe import preprocess, split


class OverfitData(NamedTuple):
    """Standardized ``(X, y)`` per split name (train, val, test) and the fitted scaler/encoder."""
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    preprocessor: preprocess.Preprocessor


def make_random_data(samples_per_class: int, num_classes: int, num_features: int,
                     rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """The lesson's overfitting data: uniform ``X: (N*C, D)`` and ``y: (N*C,)`` = class index."""
    X = rng.rand(samples_per_class * num_classes, num_features)
    y = np.repeat(np.arange(num_classes), samples_per_class)
    return X, y


def make(samples_per_class: int, num_classes: int, num_features: int,
         sizes: tuple[float, float, float], seed: int) -> OverfitData:
    """Random data, a stratified split and a scaler fit on its train split only."""
    rng = np.random.RandomState(seed)
    X, y = make_random_data(samples_per_class, num_classes, num_features, rng)
    labels = y.astype(str)
    parts = split.stratified_split(labels, *sizes, seed=seed, source="overfit_random data")
    features = [f"X{i + 1}" for i in range(num_features)]
    state = preprocess.fit(X[parts.train], labels[parts.train], features, rows=len(X))
    splits = {name: (state.transform(X[rows]), state.encode(labels[rows]))
              for name, rows in zip(("train", "val", "test"), parts)}
    return OverfitData(splits, state)
