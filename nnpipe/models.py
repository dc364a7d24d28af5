"""Model artifacts on disk, and NumPy inference for every model (no torch needed).

A model directory is self-describing and pickle-free:

- ``config.json``: architecture (kind, D, H, C, dropout, init), framework, and the
  scaler/encoder state of the data it was trained on;
- ``weights.npz``: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), loaded with allow_pickle=False;
- ``model.pt`` (torch models only): the state_dict, loaded with ``weights_only=True``.

Every model in the lesson is affine -> activation -> affine, so one NumPy forward
pass serves them all in evaluate, plot and predict (dropout is off at inference).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from nnpipe import files
from nnpipe.errors import PipelineError
from nnpipe.preprocess import Preprocessor

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
STATE_DICT_FILE = "model.pt"
WEIGHT_NAMES = ("W1", "b1", "W2", "b2")
ACTIVATIONS = {"linear": "identity", "mlp": "relu"}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one model: ``kind`` is "linear" (no activation) or "mlp" (ReLU)."""
    name: str
    kind: str
    framework: str
    input_dim: int
    hidden_dim: int
    num_classes: int
    dropout_p: float = 0.0
    init: str = "default"

    def __post_init__(self) -> None:
        if self.kind not in ACTIVATIONS:
            raise PipelineError(f"model {self.name}: unknown kind {self.kind!r}")

    @property
    def activation(self) -> str:
        return ACTIVATIONS[self.kind]


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    weights: dict[str, np.ndarray]
    preprocessor: Preprocessor

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` for already standardized ``X: (N, D)``."""
        return predict_proba(self.spec, self.weights, X)


def predict_proba(spec: ModelSpec, weights: Mapping[str, np.ndarray], X: np.ndarray,
                  chunk: int = 65536) -> np.ndarray:
    """Forward pass in NumPy: affine -> (ReLU | identity) -> affine -> softmax.

    Rows go through in chunks so memory stays bounded (N x H floats at once otherwise).
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((len(X), spec.num_classes))  # (N, C)
    for start in range(0, len(X), chunk):
        hidden = X[start:start + chunk] @ weights["W1"] + weights["b1"]  # (n, H)
        if spec.activation == "relu":
            np.maximum(hidden, 0.0, out=hidden)
        scores = hidden @ weights["W2"] + weights["b2"]  # (n, C)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        out[start:start + chunk] = scores / scores.sum(axis=1, keepdims=True)
    return out


def save(directory: str, spec: ModelSpec, weights: Mapping[str, np.ndarray],
         preprocessor: Preprocessor, extra_files: Mapping[str, bytes] | None = None) -> None:
    """Write config.json, weights.npz (and e.g. model.pt) atomically into ``directory``."""
    arrays = {name: np.asarray(weights[name], dtype=np.float64) for name in WEIGHT_NAMES}
    _check_shapes(spec, arrays, directory)
    os.makedirs(directory, exist_ok=True)
    for name, data in (extra_files or {}).items():
        files.write_bytes(os.path.join(directory, name), data)
    files.write_npz(os.path.join(directory, WEIGHTS_FILE), arrays)
    files.write_json(os.path.join(directory, CONFIG_FILE),
                  {"model": asdict(spec), "preprocess": preprocessor.to_dict()})


def load_spec(directory: str) -> tuple[ModelSpec, Preprocessor]:
    """Read a model directory's config.json."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise PipelineError(f"{directory}: model directory not found (run `dvc repro` first)")
    config = files.read_json(path)
    try:
        spec = ModelSpec(**config["model"])
    except (KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: malformed model config ({exc})") from None
    return spec, Preprocessor.from_dict(config.get("preprocess", {}), source=path)


def load(directory: str) -> LoadedModel:
    """Rebuild a model from its directory alone (no params.yaml, nothing unpickled)."""
    spec, preprocessor = load_spec(directory)
    path = os.path.join(directory, WEIGHTS_FILE)
    weights = files.read_npz(path, WEIGHT_NAMES)
    _check_shapes(spec, weights, path)
    return LoadedModel(spec, weights, preprocessor)


def _check_shapes(spec: ModelSpec, weights: Mapping[str, Any], where: str) -> None:
    d, h, c = spec.input_dim, spec.hidden_dim, spec.num_classes
    expected = {"W1": (d, h), "b1": (h,), "W2": (h, c), "b2": (c,)}
    for name, shape in expected.items():
        actual = tuple(np.shape(weights[name]))
        if actual != shape:
            raise PipelineError(f"{where}: {name} has shape {actual}, expected {shape}")
        if not np.all(np.isfinite(weights[name])):
            raise PipelineError(f"{where}: {name} holds NaN or inf")
