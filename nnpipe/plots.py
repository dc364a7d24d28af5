"""The lesson's figures as matplotlib Figures (object-oriented API; the caller saves them).

Nothing here imports pyplot: figures are built with ``matplotlib.figure.Figure``
and rendered by the Agg canvas, so no GUI backend is ever touched.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from nnpipe.core.errors import PipelineError

ProbaFn = Callable[[np.ndarray], np.ndarray]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def subsample(X: np.ndarray, y: np.ndarray, max_points: int,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` rows, chosen by a seeded draw (order kept)."""
    if len(X) <= max_points:
        return X, y
    rows = np.sort(np.random.RandomState(seed).choice(len(X), max_points, replace=False))
    return X[rows], y[rows]


def data_by_class(X: np.ndarray, labels: np.ndarray, features: Sequence[str],
                  max_points: int) -> Any:
    """Scatter of the first two features coloured by class (the lesson's first figure)."""
    fig = _figure(6, 5)
    ax = fig.add_subplot()
    classes = sorted(set(labels.tolist()))
    codes = np.searchsorted(classes, labels)
    Xs, cs = subsample(X, codes, max_points)
    ax.scatter(Xs[:, 0], Xs[:, 1] if X.shape[1] > 1 else np.zeros(len(Xs)), c=cs,
               cmap="RdYlBu", edgecolors="k", s=25, vmin=0, vmax=max(len(classes) - 1, 1))
    ax.set_xlabel(features[0])
    ax.set_ylabel(features[1] if len(features) > 1 else "")
    ax.set_title(f"Data by class ({len(X)} rows; {', '.join(classes)})")
    return fig


def data_figure(X: np.ndarray, labels: np.ndarray, numeric: Sequence[str],
                max_points: int) -> tuple[Any, str | None]:
    """The data by class over its first two numeric features (``X: (N, >=2)`` float64, NaN
    where missing: such rows left out; ``labels: (N,)``), or a placeholder and the one line
    that says why (fewer than 2 numeric features)."""
    if len(numeric) < 2:
        note = (f"data figure skipped: it needs 2 numeric features, data.features has "
                f"{len(numeric)}{' (' + ', '.join(numeric) + ')' if numeric else ''}")
        return placeholder(note), note
    X = X[:, :2]  # (N, 2)
    keep = np.isfinite(X).all(axis=1)
    return data_by_class(X[keep], labels[keep], numeric[:2], max_points), None


def boundary_note(model: str, numeric: Sequence[str], categorical: Sequence[str]) -> str | None:
    """Why ``model``'s decision boundary cannot be drawn (None if it can): the boundary is
    drawn over exactly 2 numeric features and no categorical one."""
    if len(numeric) == 2 and not categorical:
        return None
    return (f"decision boundary not drawn: it needs exactly 2 numeric features and no "
            f"categorical one, {model} has {len(numeric)} numeric and {len(categorical)} "
            "categorical")


def activations() -> Any:
    """Sigmoid, tanh and ReLU on [-5, 5) (the lesson's activation figure)."""
    fig = _figure(12, 3)
    x = np.arange(-5.0, 5.0, 0.1)
    curves = {"Sigmoid activation": 1.0 / (1.0 + np.exp(-x)), "Tanh activation": np.tanh(x),
              "ReLU activation": np.maximum(x, 0.0)}
    for i, (title, y) in enumerate(curves.items(), start=1):
        ax = fig.add_subplot(1, 3, i)
        ax.plot(x, y)
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _boundary_panel(ax: Any, proba: ProbaFn, X: np.ndarray, y: np.ndarray,
                    grid_size: int, max_points: int, title: str) -> None:
    x_min, x_max = X[:, 0].min() - 0.1, X[:, 0].max() + 0.1
    y_min, y_max = X[:, 1].min() - 0.1, X[:, 1].max() + 0.1
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, grid_size), np.linspace(y_min, y_max, grid_size))
    grid_pred = proba(np.c_[xx.ravel(), yy.ravel()]).argmax(axis=1).reshape(xx.shape)
    ax.contourf(xx, yy, grid_pred, cmap="Spectral", alpha=0.8)
    Xs, ys = subsample(X, y, max_points)
    ax.scatter(Xs[:, 0], Xs[:, 1], c=ys, s=40, cmap="RdYlBu", edgecolors="k", linewidths=0.3)
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_title(title)


def decision_boundary(proba: ProbaFn, train: tuple[np.ndarray, np.ndarray],
                      test: tuple[np.ndarray, np.ndarray], model: str,
                      grid_size: int, max_points: int) -> Any:
    """Train and test side by side over the model's decision regions (2 features only)."""
    fig = _figure(12, 5)
    for i, (name, (X, y)) in enumerate((("Train", train), ("Test", test)), start=1):
        _boundary_panel(fig.add_subplot(1, 2, i), proba, X, y, grid_size, max_points,
                        f"{model}: {name}")
    fig.tight_layout()
    return fig


def _class_panels(fig: Any, y: np.ndarray, scores: np.ndarray, classes: Sequence[str],
                  model: str) -> None:
    from sklearn.metrics import average_precision_score, auc, precision_recall_curve, roc_curve

    roc, pr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    roc.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    for c, name in enumerate(classes):
        truth = y == c  # (N,) this class against the rest
        if truth.all() or not truth.any():
            continue  # a curve needs rows of the class and rows of the rest
        fpr, tpr, _ = roc_curve(truth, scores[:, c])
        roc.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(truth, scores[:, c])
        pr.plot(recall, precision, drawstyle="steps-post",
                label=f"{name} (AP {average_precision_score(truth, scores[:, c]):.3f})")
    for ax, (x, y_label), title in ((roc, ("false positive rate", "true positive rate"), "ROC"),
                                    (pr, ("recall", "precision"), "precision-recall")):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(x)
        ax.set_ylabel(y_label)
        ax.set_title(f"{model}: test {title}, each class against the rest")
        ax.legend(loc="lower right" if ax is roc else "lower left", fontsize="small")


def class_curves(y: np.ndarray, scores: np.ndarray, classes: Sequence[str], model: str,
                 note: str) -> Any:
    """Per-class ROC and precision-recall curves on the test split (``y: (N,)`` class codes,
    ``scores: (N, C)`` the model's probabilities), each class against the rest, with its AUC
    and average precision; ``note`` (why this is not the decision boundary) below them. A
    class with no test row, or every test row, has no curve."""
    fig = _figure(12, 5)
    _class_panels(fig, y, scores, classes, model)
    fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize="small", color="dimgrey")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def training_curves(curves: Any, model: str) -> Any:
    """Loss and accuracy per epoch, train and validation (a DataFrame of History columns),
    with a dashed line at the epoch whose weights the model kept (``kept`` = 1)."""
    fig = _figure(12, 4)
    kept = curves["epoch"][curves["kept"] == 1]
    for i, (metric, label) in enumerate((("loss", "loss"), ("acc", "accuracy")), start=1):
        ax = fig.add_subplot(1, 2, i)
        marker = "o" if len(curves["epoch"]) == 1 else None  # one row: sklearn's fit
        ax.plot(curves["epoch"], curves[f"train_{metric}"], label="train", marker=marker)
        ax.plot(curves["epoch"], curves[f"val_{metric}"], label="val", marker=marker)
        for epoch in kept:
            ax.axvline(epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"kept: epoch {int(epoch)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{model}: {label}")
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], model: str) -> Any:
    """Counts with actual classes as rows and predicted ones as columns."""
    counts = np.asarray(matrix)
    fig = _figure(5, 4.5)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes))
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > threshold else "black")
    ax.set_title(f"{model}: test confusion matrix")
    fig.tight_layout()
    return fig


def placeholder(message: str) -> Any:
    """A small figure that says why a plot was not drawn (the output still exists)."""
    fig = _figure(6, 1.5)
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def confusion_for(confusion: Any, model: str, path: str) -> dict[str, Any]:
    """The test confusion matrix from evaluate's confusion JSON of ``model``, checked."""
    try:
        entry = confusion["test"]
        classes, matrix = list(entry["classes"]), entry["matrix"]
    except (KeyError, TypeError):
        raise PipelineError(f"{path}: no test confusion matrix for model {model}") from None
    if len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
        raise PipelineError(f"{path}: confusion matrix of {model} is not {len(classes)}x"
                            f"{len(classes)}")
    return {"classes": classes, "matrix": matrix}
