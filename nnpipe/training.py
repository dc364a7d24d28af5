"""One training loop for every torch model (linear, MLP at any depth, overfit MLP)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnpipe import models, torch_models
from nnpipe.errors import PipelineError
from nnpipe.history import History, TrainData, check_finite, check_finite_arrays
from nnpipe.preprocess import Preprocessor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    epochs: int
    batch_size: int | None  # None: full batch, as in the lesson
    seed: int
    log_every: int = 10
    name: str = "model"


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


def train(model: nn.Module, data: TrainData, config: TrainConfig) -> History:
    """Adam on class-weighted cross-entropy; one History row per epoch.

    Train loss/accuracy come from the epoch's forward passes (as the lesson
    prints them); validation runs after the epoch in eval mode without grad.
    Mini-batches are drawn by a generator seeded from ``config.seed``.
    """
    X_train, y_train = _tensors(data.X_train, data.y_train)
    X_val, y_val = _tensors(data.X_val, data.y_val)
    weight = None if data.class_weights is None else torch.as_tensor(
        data.class_weights, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history = History()
    n = len(y_train)
    for epoch in range(config.epochs):
        model.train()
        loss_sum, correct = 0.0, 0
        for rows in _batches(n, config.batch_size, generator):
            Xb, yb = X_train[rows], y_train[rows]
            scores = model(Xb)  # (B, C)
            loss = loss_fn(scores, yb)
            check_finite(loss.item(), config.name, epoch)
            optimizer.zero_grad()
            loss.backward()
            try:
                optimizer.step()
            except RuntimeError as exc:  # an update too large for float32
                raise PipelineError(f"{config.name}: training diverged at epoch {epoch} "
                                    f"({exc}); lower the learning rate") from None
            loss_sum += loss.item() * len(rows)
            correct += int((scores.argmax(dim=1) == yb).sum())
        model.eval()
        with torch.no_grad():
            val_scores = model(X_val)
            val_loss = loss_fn(val_scores, y_val).item()
            check_finite(val_loss, config.name, epoch)
            val_acc = float((val_scores.argmax(dim=1) == y_val).float().mean())
        history.add(epoch, loss_sum / n, correct / n, val_loss, val_acc)
        if epoch % config.log_every == 0 or epoch == config.epochs - 1:
            log.info(history.line(-1))
    model.eval()
    return history


def fit(spec: models.ModelSpec, data: TrainData, config: TrainConfig) -> tuple[nn.Module, History]:
    """Seed, build ``spec``'s module, train it; refuse weights that are not finite."""
    make_deterministic(config.seed)
    model = torch_models.build(spec)
    history = train(model, data, config)
    check_finite_arrays(torch_models.export_weights(model), config.name)
    return model, history


def save(directory: str, spec: models.ModelSpec, model: nn.Module,
         preprocessor: Preprocessor) -> None:
    """The model directory: state_dict (model.pt), NumPy weights and config JSON."""
    models.save(directory, spec, torch_models.export_weights(model), preprocessor,
                extra_files={models.STATE_DICT_FILE: torch_models.state_dict_bytes(model)})
