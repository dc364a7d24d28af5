"""The torch backend: one module for every model, one training loop, weights in and out.

``FeedForward`` is ``layer_dims = [D] + hidden_dims + [C]``: (affine -> activation ->
dropout) per hidden layer, then affine (logits); activation ``identity`` is the lesson's
linear model, ``relu`` its MLP. ``train`` is the loop every torch model trains with:
torch.optim.Adam (``fused=True``: its steps are correctly rounded, so the same on every
CPU) on class-weighted cross-entropy, deterministic algorithms, one thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnpipe import models
from nnpipe.architecture import ACTIVATIONS, INITS
from nnpipe.core.errors import PipelineError
from nnpipe.preprocess import TrainData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    epochs: int
    batch_size: int | None  # None: full batch, as in the lesson
    seed: int
    log_every: int = 10
    name: str = "model"
    keep: str = "last"  # best_val | last: which epoch's weights the module ends with
    patience: int | None = None  # stop after this many epochs without a lower val_loss


class FeedForward(nn.Module):
    """(affine -> activation -> dropout) per hidden layer, then affine: logits ``(N, C)``."""

    def __init__(self, spec: models.ModelSpec, dropout_p: float = 0.0):
        super().__init__()
        dims = spec.layer_dims
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = getattr(nn, ACTIVATIONS[spec.activation].torch)()
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = self.dropout(self.activation(layer(x)))
        return last(x)


def build(spec: models.ModelSpec, dropout_p: float = 0.0, init: str = "default") -> FeedForward:
    """A freshly initialized module (seed torch first). ``init``: nn.Linear's own
    (``default``) or the lesson's Xavier-normal, with the activation's gain, for every
    hidden layer."""
    if init not in INITS:
        raise PipelineError(f"model {spec.name}: unknown init {init!r}")
    model = FeedForward(spec, dropout_p)
    if init == "xavier_normal":
        gain = nn.init.calculate_gain(ACTIVATIONS[spec.activation].gain)
        for layer in model.layers[:-1]:
            nn.init.xavier_normal_(layer.weight, gain=gain)
    return model


def make_deterministic(seed: int) -> None:
    """Seed torch, fix the thread count and switch on deterministic algorithms."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def _tensors(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def _batches(n: int, batch_size: int | None, generator: torch.Generator) -> list[torch.Tensor]:
    if batch_size is None or batch_size >= n:
        return [torch.arange(n)]
    return list(torch.randperm(n, generator=generator).split(batch_size))


def train(model: nn.Module, data: TrainData, config: TrainConfig) -> models.History:
    """Adam on class-weighted cross-entropy; one History row per epoch.

    Train loss/accuracy come from the epoch's forward passes (as the lesson prints them);
    validation runs after the epoch in eval mode without grad. Mini-batches are drawn by a
    generator seeded from ``config.seed``. ``config.keep`` and ``config.patience``: which
    epoch's weights ``model`` ends with, and when to stop (models.Keeper).
    """
    weight = None if data.class_weights is None else torch.as_tensor(
        data.class_weights, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    generator = torch.Generator().manual_seed(config.seed)
    history = models.History(config.name)
    keeper = models.Keeper(config.keep, config.patience)
    tensors = (*_tensors(data.X_train, data.y_train), *_tensors(data.X_val, data.y_val))
    for epoch in range(config.epochs):
        _epoch(model, tensors, loss_fn, optimizer, generator, config.batch_size, history, epoch)
        stop = keeper.step(history, lambda: {k: v.detach().clone()
                                             for k, v in model.state_dict().items()})
        if epoch % config.log_every == 0 or epoch == config.epochs - 1 or stop:
            log.info(history.line(-1))
        if stop:
            log.info("no lower val_loss in %d epochs: stopped", config.patience)
            break
    keeper.finish(history, model.load_state_dict)
    model.eval()
    return history


def _epoch(model: nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn: nn.Module,
           optimizer: Any, generator: torch.Generator, batch_size: int | None,
           history: models.History, epoch: int) -> None:
    """One pass over the train split, then the validation figures, appended to ``history``
    (``tensors``: X_train, y_train, X_val, y_val)."""
    X_train, y_train, X_val, y_val = tensors
    n = len(y_train)
    model.train()
    loss_sum, correct = 0.0, 0
    for rows in _batches(n, batch_size, generator):
        Xb, yb = X_train[rows], y_train[rows]
        scores = model(Xb)  # (B, C)
        loss = loss_fn(scores, yb)
        history.check(loss.item(), epoch)  # before the step: stop at the first bad one
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(rows)
        correct += int((scores.argmax(dim=1) == yb).sum())
    model.eval()
    with torch.no_grad():
        val_scores = model(X_val)
        val_loss = loss_fn(val_scores, y_val).item()
        val_acc = float((val_scores.argmax(dim=1) == y_val).float().mean())
    history.add(epoch, loss_sum / n, correct / n, val_loss, val_acc)


def export_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """W1 (D, H1), b1 (H1,), ..., Wn (Hn-1, C), bn (C,) as float64 arrays for NumPy inference."""
    weights = {}
    for i, layer in enumerate(model.layers, start=1):
        weights[f"W{i}"] = layer.weight.detach().numpy().T.astype(np.float64)
        weights[f"b{i}"] = layer.bias.detach().numpy().astype(np.float64)
    return weights


def load(directory: str) -> FeedForward:
    """A model directory (config.json + weights.npz, either backend's) as a torch module in
    eval mode, its float32 weights those torch trained (or the NumPy weights rounded)."""
    saved = models.load(directory)
    module = FeedForward(saved.spec)
    with torch.no_grad():
        for i, layer in enumerate(module.layers, start=1):
            layer.weight.copy_(torch.as_tensor(saved.weights[f"W{i}"].T, dtype=torch.float32))
            layer.bias.copy_(torch.as_tensor(saved.weights[f"b{i}"], dtype=torch.float32))
    return module.eval()
