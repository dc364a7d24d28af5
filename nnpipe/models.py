"""Model artifacts on disk, and NumPy inference for every model (no torch needed).

A model directory is self-describing and pickle-free: ``config.json`` holds the architecture
(backend, activation, D, hidden_dims, C) and the preprocess state of its data (imputer, scaler,
encoders: nnpipe.preprocess); ``weights.npz`` holds W1 (D, H1), b1 (H1,), ..., Wn (Hn-1, C),
bn (C,), loaded with allow_pickle=False. Its training record is a :class:`History`, which both
backends' loops fill (the train stage logs it with DVCLive), with the epoch a :class:`Keeper`
chose to keep and when it stopped.

Every model is affine -> activation -> ... -> affine (``layer_dims = [D] + hidden_dims + [C]``,
cs231n's FullyConnectedNet), so one NumPy inference (``predict_proba``: each row on its own, the
same bytes in a batch of any size) serves them all in evaluate, plot and predict; ``forward``
is the NumPy MLP's training pass; ``torch_models.load`` rebuilds a torch module from the files.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from nnpipe.architecture import ACTIVATIONS, BACKENDS, KEEPS
from nnpipe.core import files
from nnpipe.core.errors import PipelineError, short
from nnpipe.preprocess import Preprocessor

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"


def weight_names(layers: int) -> tuple[str, ...]:
    """``("W1", "b1", ..., "Wn", "bn")`` for ``layers`` affine layers."""
    return tuple(f"{kind}{i}" for i in range(1, layers + 1) for kind in ("W", "b"))


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one model: the backend that trains it, the activation between its
    affine layers (identity | relu) and ``layer_dims`` (no hidden layer: one affine layer,
    as scikit-learn's LogisticRegression)."""
    name: str
    backend: str
    activation: str
    input_dim: int
    hidden_dims: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        for key, value, known in (("backend", self.backend, BACKENDS),
                                  ("activation", self.activation, ACTIVATIONS)):
            if value not in known:
                raise PipelineError(f"model {self.name}: unknown {key} {short(repr(value))} "
                                    f"(known: {', '.join(known)})")
        dims = (self.input_dim, *self.hidden_dims, self.num_classes)
        if not all(type(d) is int and d > 0 for d in dims):
            raise PipelineError(f"model {self.name}: input_dim, hidden_dims and num_classes "
                                f"must be integers > 0 (got {short(repr(dims))})")
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """``(D, H1, ..., Hn, C)``: affine layer i maps layer_dims[i-1] -> layer_dims[i]."""
        return (self.input_dim, *self.hidden_dims, self.num_classes)

    @property
    def weight_names(self) -> tuple[str, ...]:
        return weight_names(len(self.layer_dims) - 1)


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    weights: dict[str, np.ndarray]
    preprocessor: Preprocessor

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` for already encoded ``X: (N, D)``."""
        return predict_proba(self.spec, self.weights, X)


def forward(weights: Mapping[str, np.ndarray], activation: str, X: np.ndarray) -> np.ndarray:
    """Logits ``(N, C)``: (affine -> activation) per hidden layer, then affine."""
    layers, out = len(weights) // 2, X
    for i in range(1, layers + 1):
        out = out @ weights[f"W{i}"] + weights[f"b{i}"]  # (N, H_i), then (N, C)
        if i < layers and ACTIVATIONS[activation].rectify:
            out = np.maximum(out, 0.0)
    return out


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``scores: (N, C)``, shifted by the row max for stability."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def affine_by_row(hT: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(X @ W + b).T`` from ``hT = X.T: (K, n)`` and ``W: (K, H)``, as ``(H, n)``: each
    output summed in one fixed order (term k=0, 1, ..., K-1, then b) with IEEE multiplies
    and adds, exact on every CPU. A matmul's kernel, blocking and summation order depend on
    the batch's shape (OpenBLAS computes one row with gemv, a batch with gemm), so its result
    for a row changes in the last bits with the rows around it; this one's does not.
    Transposed, every operand is a contiguous row."""
    out = np.multiply.outer(W[0], hT[0])  # (H, n)
    term = np.empty_like(out)
    for k in range(1, W.shape[0]):
        np.multiply.outer(W[k], hT[k], out=term)
        out += term
    out += b[:, None]
    return out


def predict_proba(spec: ModelSpec, weights: Mapping[str, np.ndarray], X: np.ndarray,
                  budget: int = 1 << 19) -> np.ndarray:
    """Class probabilities ``(N, C)`` for every model: (affine -> activation) per hidden
    layer, affine, softmax, each row computed on its own (``affine_by_row``, the softmax's
    sum in class order), so a row's bytes do not depend on the rows that come with it. Rows
    go in chunks of at most ``budget`` floats per layer (memory stays bounded and in cache)."""
    X = np.asarray(X, dtype=np.float64)
    layers = len(spec.layer_dims) - 1
    chunk = max(1, budget // max(spec.layer_dims))
    out = np.empty((len(X), spec.num_classes))  # (N, C)
    for start in range(0, len(X), chunk):
        h = np.ascontiguousarray(X[start:start + chunk].T)  # (D, n)
        for i in range(1, layers + 1):
            h = affine_by_row(h, weights[f"W{i}"], weights[f"b{i}"])  # (H_i, n), then (C, n)
            if i < layers and ACTIVATIONS[spec.activation].rectify:
                np.maximum(h, 0.0, out=h)
        exp = np.exp(h - h.max(axis=0))
        total = exp[0].copy()
        for c in range(1, len(exp)):
            total += exp[c]
        out[start:start + chunk] = (exp / total).T
    return out


def save(directory: str, spec: ModelSpec, weights: Mapping[str, np.ndarray],
         preprocessor: Preprocessor) -> None:
    """Write weights.npz and config.json atomically into ``directory``."""
    arrays = {name: np.asarray(weights[name], dtype=np.float64) for name in spec.weight_names}
    _check_shapes(spec, arrays, directory)
    os.makedirs(directory, exist_ok=True)
    files.write_npz(os.path.join(directory, WEIGHTS_FILE), arrays)
    files.write_json(os.path.join(directory, CONFIG_FILE),
                     {"model": asdict(spec), "preprocess": preprocessor.to_dict()})


def available(root: str) -> list[str]:
    """The model names under ``root``: its subdirectories holding a config.json."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [n for n in names if os.path.isfile(os.path.join(root, n, CONFIG_FILE))]


def find(root: str, name: str) -> str:
    """The directory of model ``name`` under ``root``, or a one-line error naming the choices."""
    names = available(root)
    if name in names:
        return os.path.join(root, name)
    known = ", ".join(names) or "none: run `dvc repro` first"
    raise PipelineError(f"unknown model '{short(name)}' in {short(root, 200)} (models: {known})")


def load_spec(directory: str) -> tuple[ModelSpec, Preprocessor]:
    """Read a model directory's config.json."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise PipelineError(f"{directory}: model directory not found (run `dvc repro` first)")
    config = files.read_json(path)
    try:
        spec = ModelSpec(**config["model"])
    except (KeyError, TypeError, ValueError, PipelineError) as exc:
        raise PipelineError(f"{path}: malformed model config ({exc})") from None
    preprocessor = Preprocessor.from_dict(config.get("preprocess", {}), source=path)
    _check_scaler(preprocessor, path)
    return spec, preprocessor


def _check_scaler(state: Preprocessor, path: str) -> None:
    """Every mean finite and every scale finite and > 0: anything else turns every input
    into NaN or inf (a fitted StandardScaler never holds a zero scale)."""
    for key, positive in (("mean", False), ("scale", True)):
        for i, value in enumerate(getattr(state.scaler, key)):
            if not math.isfinite(value) or (positive and value <= 0):
                raise PipelineError(f"{path}: preprocess.scaler.{key}[{i}] is {value!r}; "
                                    f"it must be a finite number{' > 0' * positive}")


def load(directory: str) -> LoadedModel:
    """Rebuild a model from its directory alone (no params.yaml, nothing unpickled)."""
    spec, preprocessor = load_spec(directory)
    path = os.path.join(directory, WEIGHTS_FILE)
    weights = files.read_npz(path, spec.weight_names)
    _check_shapes(spec, weights, path)
    return LoadedModel(spec, weights, preprocessor)


def _check_shapes(spec: ModelSpec, weights: Mapping[str, Any], where: str) -> None:
    dims = spec.layer_dims
    expected = {}
    for i in range(1, len(dims)):
        expected[f"W{i}"], expected[f"b{i}"] = (dims[i - 1], dims[i]), (dims[i],)
    for name, shape in expected.items():
        actual = tuple(np.shape(weights[name]))
        if actual != shape:
            raise PipelineError(f"{where}: {name} has shape {actual}, expected {shape}")
        if not np.all(np.isfinite(weights[name])):
            raise PipelineError(f"{where}: {name} holds NaN or inf")


# --- the training record --------------------------------------------------------------------

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
CURVES = COLUMNS[1:]  # the figures logged per epoch (DVCLive: one plots/metrics/<name>.tsv each)


@dataclass
class History:
    """One row per epoch of model ``name`` (train and val loss and accuracy, in [0, 1]) and the
    epoch whose weights were ``kept`` (the last unless a :class:`Keeper` chose). A non-finite
    loss means training diverged: refused in one line, so no curve or weights are written."""
    name: str = "model"
    rows: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    kept: int | None = None  # None: the last row's epoch

    def check(self, loss: float, epoch: int) -> None:
        """Stop a diverging run at its first non-finite loss."""
        if not math.isfinite(loss):
            raise PipelineError(f"{self.name}: training diverged at epoch {epoch} "
                                f"(loss={loss}); lower the learning rate or check the input scale")

    def add(self, epoch: int, train_loss: float, train_acc: float,
            val_loss: float, val_acc: float) -> None:
        for loss in (train_loss, val_loss):
            self.check(float(loss), epoch)
        self.rows.append((int(epoch), float(train_loss), float(train_acc),
                          float(val_loss), float(val_acc)))

    def line(self, index: int) -> str:
        """A progress line in the lesson's style: ``Epoch: 10 | loss: 0.66, accuracy: 59.8``."""
        epoch, loss, acc, val_loss, val_acc = self.rows[index]
        return (f"Epoch: {epoch} | loss: {loss:.2f}, accuracy: {acc * 100:.1f} | "
                f"val_loss: {val_loss:.2f}, val_accuracy: {val_acc * 100:.1f}")

    def kept_row(self) -> dict[str, float]:
        """The row of the epoch whose weights the model holds."""
        epoch = self.kept_epoch()
        return dict(zip(COLUMNS, next(row for row in self.rows if row[0] == epoch)))

    def kept_epoch(self) -> int:
        """The epoch whose weights the model holds (the last one unless a Keeper chose)."""
        return self.rows[-1][0] if self.kept is None else self.kept

    def logged(self, log_every: int) -> list[dict[str, float]]:
        """The rows to log, each as a dict of ``CURVES`` and ``epoch``: every ``log_every``-th
        epoch, the last one and the kept one, in epoch order."""
        keep = {self.rows[-1][0], self.kept_epoch()} if self.rows else set()
        return [dict(zip(COLUMNS, row)) for row in self.rows
                if row[0] % log_every == 0 or row[0] in keep]


@dataclass
class Keeper:
    """Which epoch's weights a training loop keeps, and when it stops. ``keep``: ``best_val``
    restores the weights of the epoch with the lowest validation loss (the first, on a tie),
    ``last`` keeps the last epoch's; ``patience``: stop once that many epochs in a row bring no
    lower validation loss (None: every epoch runs). The loop calls :meth:`step` after each
    epoch's row and :meth:`finish` once (``snapshot``/``restore`` copy the weights out/back)."""
    keep: str = "last"
    patience: int | None = None
    best_epoch: int = -1
    best_loss: float = math.inf
    weights: Any = None

    def __post_init__(self) -> None:
        if self.keep not in KEEPS:
            raise PipelineError(f"unknown keep {short(repr(self.keep))} (known: "
                                f"{', '.join(KEEPS)})")

    def step(self, history: History, snapshot: Callable[[], Any]) -> bool:
        """Record the epoch just added to ``history``; True when training should stop."""
        epoch, val_loss = history.rows[-1][0], history.rows[-1][3]
        if val_loss < self.best_loss:
            self.best_epoch, self.best_loss = epoch, val_loss
            if self.keep == "best_val":
                self.weights = snapshot()
        return self.patience is not None and epoch - self.best_epoch >= self.patience

    def finish(self, history: History, restore: Callable[[Any], None]) -> None:
        """Put the kept weights back and mark their epoch in ``history``."""
        if self.keep == "best_val" and self.weights is not None:
            restore(self.weights)
            history.kept = self.best_epoch
        elif history.rows:
            history.kept = history.rows[-1][0]
