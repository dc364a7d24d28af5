"""Classification metrics (scikit-learn), shaped for `dvc metrics diff` and a summary table."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np


class SplitMetrics(NamedTuple):
    """Overall figures, per-class figures and the confusion matrix of one model on one split."""
    overall: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> SplitMetrics:
    """Accuracy and weighted precision/recall/F1; per class P/R/F1/support; confusion (C, C).

    Rows of the confusion matrix are actual classes, columns predicted ones.
    Undefined precision (a class never predicted) counts as 0, as in the lesson.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = np.arange(len(classes))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    overall = {"accuracy": float(accuracy_score(y_true, y_pred)), "precision": float(precision),
               "recall": float(recall), "f1": float(f1)}
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    per_class = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                        "support": int(support[i])} for i, name in enumerate(classes)}
    confusion = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return SplitMetrics(overall, per_class, confusion)


def summary_markdown(metrics: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     split: str = "test") -> str:
    """A models x (accuracy, F1) table on ``split``, fit for a pull-request comment."""
    lines = [f"## Model comparison ({split} split)", "",
             "| model | accuracy | precision | recall | f1 |",
             "|---|---:|---:|---:|---:|"]
    for model, splits in metrics.items():
        m = splits[split]
        lines.append(f"| {model} | {m['accuracy']:.4f} | {m['precision']:.4f} | "
                     f"{m['recall']:.4f} | {m['f1']:.4f} |")
    return "\n".join(lines) + "\n"
