"""Per-epoch training records shared by the NumPy and torch training loops."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from nnpipe.errors import PipelineError

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


class TrainData(NamedTuple):
    """Standardized ``X: (N, D)`` and encoded ``y: (N,)`` of train and val, and class weights (C,)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    class_weights: np.ndarray | None = None


@dataclass
class History:
    """One row per epoch: train loss/accuracy and validation loss/accuracy (accuracy in [0, 1])."""
    rows: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    def add(self, epoch: int, train_loss: float, train_acc: float,
            val_loss: float, val_acc: float) -> None:
        self.rows.append((int(epoch), float(train_loss), float(train_acc),
                          float(val_loss), float(val_acc)))

    def line(self, index: int) -> str:
        """A progress line in the lesson's style: ``Epoch: 10 | loss: 0.66, accuracy: 59.8``."""
        epoch, loss, acc, val_loss, val_acc = self.rows[index]
        return (f"Epoch: {epoch} | loss: {loss:.2f}, accuracy: {acc * 100:.1f} | "
                f"val_loss: {val_loss:.2f}, val_accuracy: {val_acc * 100:.1f}")

    def last(self) -> dict[str, float]:
        return dict(zip(COLUMNS, self.rows[-1]))

    def to_csv(self) -> str:
        """CSV text with a header, floats in repr form (exact, deterministic)."""
        lines = [",".join(COLUMNS)]
        lines += [",".join([str(row[0])] + [repr(v) for v in row[1:]]) for row in self.rows]
        return "\n".join(lines) + "\n"


def check_finite(loss: float, model: str, epoch: int) -> None:
    """Stop a diverging run before it writes NaN weights or metrics."""
    if not math.isfinite(loss):
        raise PipelineError(f"{model}: training diverged at epoch {epoch} (loss={loss}); "
                            "lower the learning rate or check the input scale")


def check_finite_arrays(arrays: dict[str, Any], model: str) -> None:
    """Refuse to save weights that hold NaN or inf."""
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise PipelineError(f"{model}: weights {name} are not finite after training; "
                                "lower the learning rate")


def load_train_data(train_path: str, val_path: str, class_weights: np.ndarray,
                    input_dim: int) -> TrainData:
    """The processed train and val splits, checked against the expected feature count D."""
    from nnpipe import files

    X_train, y_train = files.read_xy(train_path)
    X_val, y_val = files.read_xy(val_path)
    for path, X in ((train_path, X_train), (val_path, X_val)):
        if X.shape[1] != input_dim:
            raise PipelineError(f"{path}: has {X.shape[1]} features, the scaler state "
                                f"has {input_dim}; re-run scale_encode")
    return TrainData(X_train, y_train, X_val, y_val, class_weights)
