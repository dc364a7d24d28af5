"""torch modules built from a :class:`ModelSpec`, and their pickle-free checkpoints."""
from __future__ import annotations

import io as _io

import numpy as np
import torch
from torch import nn

from nnpipe import files
from nnpipe.errors import PipelineError
from nnpipe.models import ModelSpec


class FeedForward(nn.Module):
    """``layer_dims = [D] + hidden_dims + [C]``: (affine -> ReLU -> dropout) per hidden layer,
    then affine (logits). Kind "linear" is the lesson's linear model: no activation, no dropout.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        dims = spec.layer_dims
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.relu = spec.activation == "relu"
        self.dropout = nn.Dropout(spec.dropout_p)

    def init_weights(self) -> None:
        """The lesson's variant: Xavier-normal weights with ReLU gain, for every hidden layer."""
        for layer in self.layers[:-1]:
            nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain("relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = layer(x)
            if self.relu:
                x = self.dropout(torch.relu(x))
        return last(x)


def build(spec: ModelSpec) -> nn.Module:
    """A freshly initialized module (seed torch before calling); applies ``spec.init``."""
    model = FeedForward(spec)
    if spec.init == "xavier_normal":
        if spec.kind != "mlp":
            raise PipelineError(f"model {spec.name}: init xavier_normal needs kind mlp")
        model.init_weights()
    elif spec.init != "default":
        raise PipelineError(f"model {spec.name}: unknown init {spec.init!r}")
    return model


def export_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """W1 (D, H1), b1 (H1,), ..., Wn (Hn-1, C), bn (C,) as float64 arrays for NumPy inference."""
    weights = {}
    for i, layer in enumerate(model.layers, start=1):
        weights[f"W{i}"] = layer.weight.detach().numpy().T.astype(np.float64)
        weights[f"b{i}"] = layer.bias.detach().numpy().astype(np.float64)
    return weights


def state_dict_bytes(model: nn.Module) -> bytes:
    """The state_dict as a torch archive whose bytes depend only on the tensors."""
    buffer = _io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return files.deterministic_torch_archive(buffer.getvalue())
