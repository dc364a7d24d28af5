"""torch modules built from a :class:`ModelSpec`, and their pickle-free checkpoints."""
from __future__ import annotations

import io as _io
import os
import re

import numpy as np
import torch
from torch import nn

from nnpipe import files
from nnpipe.errors import PipelineError
from nnpipe.models import STATE_DICT_FILE, ModelSpec


class LinearModel(nn.Module):
    """The lesson's linear model: two affine layers, no activation between them."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.fc1 = nn.Linear(spec.input_dim, spec.hidden_dim)
        self.fc2 = nn.Linear(spec.hidden_dim, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class MLP(nn.Module):
    """affine -> ReLU -> dropout -> affine (logits)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.fc1 = nn.Linear(spec.input_dim, spec.hidden_dim)
        self.dropout = nn.Dropout(spec.dropout_p)
        self.fc2 = nn.Linear(spec.hidden_dim, spec.num_classes)

    def init_weights(self) -> None:
        """The lesson's variant: Xavier-normal fc1 weights with ReLU gain."""
        nn.init.xavier_normal_(self.fc1.weight, gain=nn.init.calculate_gain("relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


def build(spec: ModelSpec) -> nn.Module:
    """A freshly initialized module (seed torch before calling); applies ``spec.init``."""
    model: nn.Module = LinearModel(spec) if spec.kind == "linear" else MLP(spec)
    if spec.init == "xavier_normal":
        if not isinstance(model, MLP):
            raise PipelineError(f"model {spec.name}: init xavier_normal needs kind mlp")
        model.init_weights()
    elif spec.init != "default":
        raise PipelineError(f"model {spec.name}: unknown init {spec.init!r}")
    return model


def export_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """W1 (D, H), b1 (H,), W2 (H, C), b2 (C,) as float64 arrays for NumPy inference."""
    state = model.state_dict()
    return {
        "W1": state["fc1.weight"].detach().numpy().T.astype(np.float64),
        "b1": state["fc1.bias"].detach().numpy().astype(np.float64),
        "W2": state["fc2.weight"].detach().numpy().T.astype(np.float64),
        "b2": state["fc2.bias"].detach().numpy().astype(np.float64),
    }


def state_dict_bytes(model: nn.Module) -> bytes:
    """The state_dict as a torch archive whose bytes depend only on the tensors."""
    buffer = _io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return files.deterministic_torch_archive(buffer.getvalue())


def load_module(directory: str, spec: ModelSpec) -> nn.Module:
    """Rebuild a module from ``model.pt`` with ``weights_only=True`` (never unpickles code)."""
    path = os.path.join(directory, STATE_DICT_FILE)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise PipelineError(f"{path}: refused to load ({first[:160]})") from None
    model = build(spec)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise PipelineError(f"{path}: state_dict does not match the config ({exc})") from None
    model.eval()
    return model
