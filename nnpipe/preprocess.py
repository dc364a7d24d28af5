"""Scaler and label encoder, fit on train only, with their learned state as JSON; the
processed splits a model trains on.

scikit-learn's StandardScaler and LabelEncoder do the work; their learned
attributes (``mean_``, ``scale_``, ``var_``, ``classes_``) are kept as plain
JSON and the objects are rebuilt from it, never pickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from nnpipe.core.errors import PipelineError


class TrainData(NamedTuple):
    """Standardized ``X: (N, D)`` and encoded ``y: (N,)`` of train and val, and class weights (C,)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    class_weights: np.ndarray | None = None


@dataclass(frozen=True)
class Preprocessor:
    """Learned state: D features' mean/scale/var, C class names, class weights 1/count, and
    the rows of the whole data set (all splits; ``hidden_dims: auto`` is 2 * rows + D)."""
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    var: tuple[float, ...]
    n_samples_seen: int
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    rows: int

    @property
    def class_weights(self) -> np.ndarray:
        """(C,) weight 1/count per class, as in the lesson."""
        return 1.0 / np.asarray(self.class_counts, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "scaler": {"mean": list(self.mean), "scale": list(self.scale),
                       "var": list(self.var), "n_samples_seen": self.n_samples_seen},
            "classes": list(self.classes),
            "class_counts": list(self.class_counts),
            "class_weights": self.class_weights.tolist(),
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "preprocess state") -> "Preprocessor":
        try:
            scaler = state["scaler"]
            result = cls(
                features=tuple(str(f) for f in state["features"]),
                mean=tuple(float(v) for v in scaler["mean"]),
                scale=tuple(float(v) for v in scaler["scale"]),
                var=tuple(float(v) for v in scaler["var"]),
                n_samples_seen=int(scaler["n_samples_seen"]),
                classes=tuple(str(c) for c in state["classes"]),
                class_counts=tuple(int(c) for c in state["class_counts"]),
                rows=int(state["rows"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(f"{source}: malformed scaler/encoder state ({exc!r})") from None
        d = len(result.features)
        if not (len(result.mean) == len(result.scale) == len(result.var) == d) \
                or len(result.class_counts) != len(result.classes) or not result.classes:
            raise PipelineError(f"{source}: scaler/encoder state has inconsistent lengths")
        return result

    def scaler(self) -> Any:
        """A fitted StandardScaler rebuilt from this state."""
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        scaler.mean_ = np.asarray(self.mean)
        scaler.scale_ = np.asarray(self.scale)
        scaler.var_ = np.asarray(self.var)
        scaler.n_features_in_ = len(self.features)
        scaler.n_samples_seen_ = self.n_samples_seen
        return scaler

    def encoder(self) -> Any:
        """A fitted LabelEncoder rebuilt from this state."""
        from sklearn.preprocessing import LabelEncoder

        encoder = LabelEncoder()
        encoder.classes_ = np.asarray(self.classes)
        return encoder

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardize ``X: (N, D)`` with the train statistics."""
        return self.scaler().transform(np.asarray(X, dtype=np.float64))

    def encode(self, labels: Sequence[str]) -> np.ndarray:
        """Class names -> ``(N,) int64`` indices."""
        return self.encoder().transform(np.asarray(labels, dtype=str)).astype(np.int64)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        return self.encoder().inverse_transform(np.asarray(indices, dtype=np.int64))


def fit(X_train: np.ndarray, labels_train: Sequence[str], features: Sequence[str],
        rows: int) -> Preprocessor:
    """Fit StandardScaler and LabelEncoder on the train split only (of a data set of ``rows``
    rows in all)."""
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    scaler = StandardScaler().fit(np.asarray(X_train, dtype=np.float64))
    encoder = LabelEncoder().fit(np.asarray(labels_train, dtype=str))
    counts = np.bincount(encoder.transform(np.asarray(labels_train, dtype=str)),
                         minlength=len(encoder.classes_))
    return Preprocessor(
        features=tuple(features),
        mean=tuple(scaler.mean_.tolist()),
        scale=tuple(scaler.scale_.tolist()),
        var=tuple(scaler.var_.tolist()),
        n_samples_seen=int(scaler.n_samples_seen_),
        classes=tuple(str(c) for c in encoder.classes_),
        class_counts=tuple(int(c) for c in counts),
        rows=int(rows),
    )


def load(path: str) -> Preprocessor:
    """Read the scaler/encoder state JSON written by scale_encode."""
    from nnpipe.core import files

    return Preprocessor.from_dict(files.read_json(path), source=path)


def save(path: str, state: Preprocessor) -> None:
    from nnpipe.core import files

    files.write_json(path, state.to_dict())


def load_train_data(train_path: str, val_path: str, state: Preprocessor) -> TrainData:
    """The processed train and val splits, checked against the state's D features."""
    from nnpipe.core import files

    X_train, y_train = files.read_xy(train_path)
    X_val, y_val = files.read_xy(val_path)
    for path, X in ((train_path, X_train), (val_path, X_val)):
        if X.shape[1] != len(state.features):
            raise PipelineError(f"{path}: has {X.shape[1]} features, the scaler state "
                                f"has {len(state.features)}; re-run the data stages")
    return TrainData(X_train, y_train, X_val, y_val, state.class_weights)
