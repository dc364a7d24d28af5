"""Per-epoch training records, written by both backends' loops and plotted by plot_model."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from nnpipe.core.errors import PipelineError

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class History:
    """One row per epoch of model ``name``: train loss/accuracy and validation loss/accuracy
    (accuracy in [0, 1]). A loss that is not finite means training diverged: it is refused
    with one line, so no curve or weights are written from it."""
    name: str = "model"
    rows: list[tuple[int, float, float, float, float]] = field(default_factory=list)

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

    def last(self) -> dict[str, float]:
        return dict(zip(COLUMNS, self.rows[-1]))

    def to_csv(self) -> str:
        """CSV text with a header, floats in repr form (exact, deterministic)."""
        lines = [",".join(COLUMNS)]
        lines += [",".join([str(row[0])] + [repr(v) for v in row[1:]]) for row in self.rows]
        return "\n".join(lines) + "\n"
