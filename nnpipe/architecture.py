"""What a model of the registry is: its words (activations, backends, keep, class_weight) and
the params section ``train_<model>`` that picks among them.

Each vocabulary is written here once and read by the schema (the sections below), both
training backends, inference (nnpipe.models) and the docs. This module imports neither numpy
nor torch: params load before the math is pinned.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Optional, Union

from pydantic import Field, StrictInt, model_validator

from nnpipe.core.params import MAX_SCALE, Number, Section, Text


class Activation(NamedTuple):
    """An activation between affine layers, as each piece of code applies it."""
    torch: str      # the torch.nn module (torch_models)
    gain: str       # torch.nn.init.calculate_gain's name, for Xavier init (torch_models)
    rectify: bool   # NumPy (numpy_mlp and models' inference): max(x, 0), gradient where x > 0


ACTIVATIONS = {"identity": Activation("Identity", "linear", False),  # the lesson's linear model
               "relu": Activation("ReLU", "relu", True)}             # its MLP
KEEPS = ("best_val", "last")  # which epoch's weights a model keeps (models.Keeper)
CLASS_WEIGHTS = ("balanced", "none")  # the loss's weight per class: N / (C * count), or none
INITS = ("default", "xavier_normal")  # a torch model's init (torch_models.build)

MAX_WIDTH = 100_000          # hidden units per layer
MAX_LAYERS = 20              # hidden layers
MAX_WEIGHTS = 50_000_000     # hidden-to-hidden weights, sum of h[i] * h[i+1]
MAX_EPOCHS = 1_000_000
Width = Annotated[StrictInt, Field(gt=0, le=MAX_WIDTH)]
Epochs = Annotated[StrictInt, Field(gt=0, le=MAX_EPOCHS)]


class ModelParams(Section):
    """A model of the registry (section ``train_<model>``): its family and shape are data.

    ``backend`` picks the code that trains it (nnpipe.training.BACKENDS), ``activation`` the
    function between affine layers, ``hidden_dims`` the width of each hidden layer, or
    ``auto`` (nnpipe.training.hidden_widths: the lesson's rule for a model that memorizes its
    data). ``class_weight``: ``balanced`` weights each class's loss by 1/count, as the lesson
    does; ``none`` weights every row alike. ``keep``: the weights of the epoch with the lowest
    validation loss (``best_val``) or of the last (``last``); ``patience``: stop after that many
    epochs without a lower validation loss (null: run every epoch).
    """
    backend: Text
    activation: Literal[tuple(ACTIVATIONS)]
    hidden_dims: Union[Literal["auto"], Annotated[tuple[Width, ...],
                                                  Field(min_length=1, max_length=MAX_LAYERS)]]
    lr: Number = Field(gt=0, le=MAX_SCALE)
    epochs: Epochs
    batch_size: Optional[Annotated[StrictInt, Field(gt=0)]]
    log_every: StrictInt = Field(gt=0)
    class_weight: Literal[CLASS_WEIGHTS]
    keep: Literal[KEEPS]
    patience: Optional[Epochs]

    @model_validator(mode="after")
    def _weights(self) -> "ModelParams":
        widths = () if self.hidden_dims == "auto" else self.hidden_dims
        weights = sum(a * b for a, b in zip(widths, widths[1:]))
        if weights > MAX_WEIGHTS:
            raise ValueError(f"hidden_dims={list(widths)} has {weights} hidden-to-hidden "
                             f"weights, at most {MAX_WEIGHTS}")
        return self


class NumpyModelParams(ModelParams):
    """``backend: numpy``: the lesson's init (``init_scale * randn``) and gradient descent."""
    init_scale: Number = Field(gt=0, le=MAX_SCALE)


class TorchModelParams(ModelParams):
    """``backend: torch``: dropout after each hidden activation, an init, torch.optim.Adam."""
    dropout_p: Number = Field(ge=0, lt=1)
    init: Literal[INITS]


class SklearnModelParams(Section):
    """``backend: sklearn``: scikit-learn's LogisticRegression (lbfgs), the reference model.

    It reads ``epochs`` (lbfgs's ``max_iter``) and ``class_weight``. The other keys of a model
    section (the architecture, the optimizer, keep and patience) do not apply to it and are
    ignored, so ``-S train_linear.backend=sklearn`` switches a section in one step; any other
    key is refused as in every section.
    """
    backend: Text
    epochs: Epochs  # lbfgs's max_iter
    class_weight: Literal[CLASS_WEIGHTS]
    activation: ClassVar[str] = "identity"  # softmax(X @ W1 + b1): no hidden layer
    hidden_dims: ClassVar[tuple[int, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _ignore_other_backends_keys(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        return {k: v for k, v in raw.items() if k in cls.model_fields or k not in IGNORED}


# The section type of each backend; nnpipe.training.BACKENDS holds each one's fit function.
MODEL_SECTIONS: dict[str, type[Section]] = {"numpy": NumpyModelParams,
                                            "torch": TorchModelParams,
                                            "sklearn": SklearnModelParams}
BACKENDS = tuple(MODEL_SECTIONS)
# The keys of the other backends a sklearn section ignores.
IGNORED = frozenset(NumpyModelParams.model_fields) | frozenset(TorchModelParams.model_fields)
