"""The lesson's MLP written from scratch in NumPy, at any depth (no torch anywhere here).

Layers follow the cs231n contract: ``*_forward`` returns ``(out, cache)`` and
``*_backward(dout, cache)`` returns the gradients, side by side. Shapes use the
lesson's letters: N samples, D features, H hidden units (per layer), C classes. The
activation between affine layers is ``relu`` (the MLP) or ``identity`` (the linear model).
Its forward pass is nnpipe.models.forward; every model's inference is models.predict_proba.
"""
from __future__ import annotations

import logging
from typing import Any, NamedTuple, Sequence

import numpy as np

from nnpipe.architecture import ACTIVATIONS
from nnpipe.models import History, Keeper, forward
from nnpipe.preprocess import TrainData

log = logging.getLogger(__name__)


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


class Loss(NamedTuple):
    """A forward/backward pass: the loss, gradients keyed like ``params`` (W1 -> "W1"), logits."""
    loss: float
    grads: dict[str, np.ndarray]
    scores: np.ndarray  # (N, C)


class NumpyMLP:
    """(affine -> activation) per hidden layer -> affine; ``params`` holds W1..Wn, b1..bn.

    ``layer_dims = [D] + hidden_dims + [C]``: Wi is (layer_dims[i-1], layer_dims[i]).
    ``activation`` is a name of architecture.ACTIVATIONS ("identity": the linear model).
    """

    def __init__(self, params: dict[str, np.ndarray], activation: str = "relu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        self.params = params
        self.layers = len(params) // 2
        self.activation = activation

    @classmethod
    def init(cls, layer_dims: Sequence[int], scale: float, rng: np.random.RandomState,
             activation: str = "relu") -> "NumpyMLP":
        """The lesson's init: weights ``scale * randn``, biases zero, layer by layer."""
        params = {}
        for i in range(1, len(layer_dims)):
            params[f"W{i}"] = scale * rng.randn(layer_dims[i - 1], layer_dims[i])
            params[f"b{i}"] = np.zeros(layer_dims[i])
        return cls(params, activation)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Logits ``(N, C)``."""
        return forward(self.params, self.activation, X)

    def loss(self, X: np.ndarray, y: np.ndarray,
             class_weights: np.ndarray | None = None) -> Loss:
        """Forward through every layer, softmax cross-entropy, then backward layer by layer."""
        p, out, caches = self.params, X, []
        for i in range(1, self.layers + 1):
            out, affine_cache = affine_forward(out, p[f"W{i}"], p[f"b{i}"])
            relu_cache = None
            if i < self.layers and ACTIVATIONS[self.activation].rectify:
                out, relu_cache = relu_forward(out)
            caches.append((affine_cache, relu_cache))
        loss, dout = softmax_cross_entropy(out, y, class_weights)
        grads: dict[str, np.ndarray] = {}
        for i in range(self.layers, 0, -1):
            affine_cache, relu_cache = caches[i - 1]
            if relu_cache is not None:
                dout = relu_backward(dout, relu_cache)
            dout, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(dout, affine_cache)
        return Loss(loss, grads, out)


def _batches(n: int, batch_size: int | None, rng: np.random.RandomState) -> list[np.ndarray]:
    if batch_size is None or batch_size >= n:
        return [np.arange(n)]
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train(model: NumpyMLP, data: TrainData, lr: float, epochs: int, batch_size: int | None,
          rng: np.random.RandomState, log_every: int = 100, name: str = "numpy_mlp",
          keep: str = "last", patience: int | None = None) -> History:
    """Plain gradient descent, in place on ``model.params``; one History row per epoch.

    Train loss/accuracy are those of the forward passes of the epoch (as the
    lesson prints them); validation figures are taken after the epoch's updates. ``keep`` and
    ``patience``: which epoch's weights ``model`` ends with, and when to stop (models.Keeper).
    """
    history, keeper = History(name), Keeper(keep, patience)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by History
        for epoch in range(epochs):
            _epoch(model, data, lr, batch_size, rng, history, epoch)
            stop = keeper.step(history, lambda: {k: v.copy() for k, v in model.params.items()})
            if epoch % log_every == 0 or epoch == epochs - 1 or stop:
                log.info(history.line(-1))
            if stop:
                log.info("no lower val_loss in %d epochs: stopped", patience)
                break
    keeper.finish(history, model.params.update)
    return history


def _epoch(model: NumpyMLP, data: TrainData, lr: float, batch_size: int | None,
           rng: np.random.RandomState, history: History, epoch: int) -> None:
    """One pass over the train split, then the validation figures, appended to ``history``."""
    n = len(data.y_train)
    loss_sum, correct = 0.0, 0
    for rows in _batches(n, batch_size, rng):
        Xb, yb = data.X_train[rows], data.y_train[rows]
        loss, grads, scores = model.loss(Xb, yb, data.class_weights)
        history.check(loss, epoch)  # before the update: stop at the first bad step
        correct += int((scores.argmax(axis=1) == yb).sum())
        loss_sum += loss * len(rows)
        for key, grad in grads.items():
            model.params[key] -= lr * grad
    val_scores = model.scores(data.X_val)
    val_loss, _ = softmax_cross_entropy(val_scores, data.y_val, data.class_weights)
    history.add(epoch, loss_sum / n, correct / n, val_loss,
                float((val_scores.argmax(axis=1) == data.y_val).mean()))
