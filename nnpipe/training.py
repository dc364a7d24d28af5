"""One training loop for every torch model (linear, MLP, overfit MLP)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nnpipe import history, files, models, preprocess, torch_models
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
    """Seed torch, fix the thread count and switch on deterministic algorithms.

    ``torch.use_deterministic_algorithms`` also sets a flag in the inductor
    compiler's config, importing the whole compiler stack (~1.5 s); nothing here
    is compiled, so only the runtime switch it wraps is set.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch._C._set_deterministic_algorithms(True)


class Adam:
    """Adam exactly as ``torch.optim.Adam``'s default single-tensor path computes it.

    torch 2.13's optimizers import the torch compiler stack (torch._dynamo, ~1 s)
    on first use, to mark their methods as not compilable; nothing here is
    compiled, so this class performs the same tensor operations in the same order
    without that import. tests/test_training.py checks it step for step against
    ``torch.optim.Adam`` (bit-identical parameters).
    """

    def __init__(self, params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        bias_correction1 = 1 - beta1 ** self.steps
        bias_correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        step_size = self.lr / bias_correction1
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)


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
    optimizer = Adam(model.parameters(), lr=config.lr)
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


class StagePaths(NamedTuple):
    """A training stage's inputs (processed splits, scaler/encoder state) and outputs."""
    train: str
    val: str
    preprocess: str
    model_dir: str
    curves: str


def run_stage(stage: str, model: str, kind: str, hp: Any, seed: int, paths: StagePaths,
              dropout_p: float = 0.0, init: str = "default") -> History:
    """Train a torch model on the processed spiral splits and write its directory and curves.

    ``hp`` is the stage's params section (hidden_dim, lr, epochs, batch_size, log_every).
    """
    state = preprocess.load(paths.preprocess)
    spec = models.ModelSpec(name=model, kind=kind, framework="torch",
                            input_dim=len(state.features), hidden_dim=hp.hidden_dim,
                            num_classes=len(state.classes), dropout_p=dropout_p, init=init)
    data = history.load_train_data(paths.train, paths.val, state.class_weights, spec.input_dim)
    config = TrainConfig(hp.lr, hp.epochs, hp.batch_size, seed, hp.log_every, stage)
    module, hist = fit(spec, data, config)
    save(paths.model_dir, spec, module, state)
    files.write_text(paths.curves, hist.to_csv())
    return hist
