"""The lesson's two-layer MLP written from scratch in NumPy (no torch anywhere here).

Layers follow the cs231n contract: ``*_forward`` returns ``(out, cache)`` and
``*_backward(dout, cache)`` returns the gradients, side by side. Shapes use the
lesson's letters: N samples, D features, H hidden units, C classes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnpipe.history import History, TrainData, check_finite

log = logging.getLogger(__name__)

PARAM_NAMES = ("W1", "b1", "W2", "b2")


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """``x: (N, D) @ w: (D, H) + b: (H,) -> (N, H)``."""
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of an affine layer: ``dx: (N, D)``, ``dw: (D, H)``, ``db: (H,)``."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    out = np.maximum(x, 0.0)
    return out, out > 0


def relu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    return dout * cache


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``scores: (N, C)``, shifted by the row max for stability."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray,
                          class_weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``scores: (N, C)`` against ``y: (N,)`` and ``dscores: (N, C)``.

    With ``class_weights: (C,)`` the mean is weighted as torch's
    ``CrossEntropyLoss(weight=...)``: sum(w[y_i] * l_i) / sum(w[y_i]).
    """
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)
    rows = np.arange(n)
    sample_w = np.ones(n) if class_weights is None else np.asarray(class_weights)[y]  # (N,)
    total = sample_w.sum()
    loss = float(-(sample_w * log_probs[rows, y]).sum() / total)
    dscores = np.exp(log_probs)  # a new array: probs
    dscores[rows, y] -= 1.0
    dscores *= (sample_w / total)[:, None]
    return loss, dscores


@dataclass(frozen=True)
class MLPConfig:
    input_dim: int
    hidden_dim: int
    num_classes: int


class NumpyMLP:
    """affine -> ReLU -> affine; ``params`` holds W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.params = params

    @classmethod
    def init(cls, config: MLPConfig, scale: float, rng: np.random.RandomState) -> "NumpyMLP":
        """The lesson's init: weights ``scale * randn``, biases zero."""
        d, h, c = config.input_dim, config.hidden_dim, config.num_classes
        return cls({
            "W1": scale * rng.randn(d, h), "b1": np.zeros(h),
            "W2": scale * rng.randn(h, c), "b2": np.zeros(c),
        })

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Logits ``(N, C)``."""
        p = self.params
        hidden, _ = relu_forward(X @ p["W1"] + p["b1"])  # (N, H)
        return hidden @ p["W2"] + p["b2"]

    def loss(self, X: np.ndarray, y: np.ndarray,
             class_weights: np.ndarray | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients, keyed like ``params`` (the gradient of W1 under "W1")."""
        loss, grads, _ = self.loss_and_scores(X, y, class_weights)
        return loss, grads

    def loss_and_scores(self, X: np.ndarray, y: np.ndarray, class_weights: np.ndarray | None = None
                        ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """:meth:`loss` plus the forward pass's logits ``(N, C)``."""
        p = self.params
        z1, affine1 = affine_forward(X, p["W1"], p["b1"])  # (N, H)
        a1, relu_cache = relu_forward(z1)
        scores, affine2 = affine_forward(a1, p["W2"], p["b2"])  # (N, C)
        loss, dscores = softmax_cross_entropy(scores, y, class_weights)
        da1, dW2, db2 = affine_backward(dscores, affine2)
        dz1 = relu_backward(da1, relu_cache)
        _, dW1, db1 = affine_backward(dz1, affine1)
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}, scores


def _batches(n: int, batch_size: int | None, rng: np.random.RandomState) -> list[np.ndarray]:
    if batch_size is None or batch_size >= n:
        return [np.arange(n)]
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train(model: NumpyMLP, data: TrainData, lr: float, epochs: int, batch_size: int | None,
          rng: np.random.RandomState, log_every: int = 100, name: str = "numpy_mlp") -> History:
    """Plain gradient descent, in place on ``model.params``; one History row per epoch.

    Train loss/accuracy are those of the forward passes of the epoch (as the
    lesson prints them); validation figures are taken after the epoch's updates.
    """
    history = History()
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by check_finite
        for epoch in range(epochs):
            _epoch(model, data, lr, batch_size, rng, history, epoch, name)
            if epoch % log_every == 0 or epoch == epochs - 1:
                log.info(history.line(-1))
    return history


def _epoch(model: NumpyMLP, data: TrainData, lr: float, batch_size: int | None,
           rng: np.random.RandomState, history: History, epoch: int, name: str) -> None:
    """One pass over the train split, then the validation figures, appended to ``history``."""
    n = len(data.y_train)
    loss_sum, correct = 0.0, 0
    for rows in _batches(n, batch_size, rng):
        Xb, yb = data.X_train[rows], data.y_train[rows]
        loss, grads, scores = model.loss_and_scores(Xb, yb, data.class_weights)
        check_finite(loss, name, epoch)
        correct += int((scores.argmax(axis=1) == yb).sum())
        loss_sum += loss * len(rows)
        for key in PARAM_NAMES:
            model.params[key] -= lr * grads[key]
    val_scores = model.scores(data.X_val)
    val_loss, _ = softmax_cross_entropy(val_scores, data.y_val, data.class_weights)
    check_finite(val_loss, name, epoch)
    history.add(epoch, loss_sum / n, correct / n, val_loss,
                float((val_scores.argmax(axis=1) == data.y_val).mean()))
