"""Evaluate saved models on their processed splits (NumPy inference, no torch)."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from nnpipe import metrics, models

from nnpipe.core import files
from nnpipe.core.errors import PipelineError


class Report(NamedTuple):
    overall: dict[str, dict[str, dict[str, float]]]  # model -> split -> figure
    per_class: dict[str, Any]  # model -> split -> class -> figure
    confusion: dict[str, Any]  # model -> split -> {"classes", "matrix"}
    predictions: dict[str, Any]  # model -> DataFrame(actual, predicted) on test
    summary: str

    @property
    def headline(self) -> dict[str, dict[str, float]]:
        """model -> {"test_acc": accuracy on test}: the first columns of `dvc exp show`."""
        return {name: {"test_acc": splits["test"]["accuracy"]}
                for name, splits in self.overall.items() if "test" in splits}


def evaluate_models(plan: Mapping[str, tuple[str, Mapping[str, str]]]) -> Report:
    """``plan``: model name -> (model directory, split name -> processed .npz path)."""
    import pandas as pd

    overall: dict[str, Any] = {}
    per_class: dict[str, Any] = {}
    confusion: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    for name, (model_dir, splits) in plan.items():
        model = models.load(model_dir)
        classes = list(model.preprocessor.classes)
        overall[name], per_class[name], confusion[name] = {}, {}, {}
        for split_name, path in splits.items():
            X, y = files.read_xy(path)
            check_split(X, y, model.spec, path)
            y_pred = model.predict_proba(X).argmax(axis=1)
            result = metrics.evaluate(y, y_pred, classes)
            overall[name][split_name] = result.overall
            per_class[name][split_name] = result.per_class
            confusion[name][split_name] = {"classes": classes, "matrix": result.confusion}
            if split_name == "test":
                predictions[name] = pd.DataFrame({"actual": model.preprocessor.decode(y),
                                                  "predicted": model.preprocessor.decode(y_pred)})
    return Report(overall, per_class, confusion, predictions, metrics.summary_markdown(overall))


def check_split(X: Any, y: Any, spec: models.ModelSpec, path: str) -> None:
    """A processed split must fit its model: D features, labels below C."""
    if X.shape[1] != spec.input_dim:
        raise PipelineError(f"{path}: has {X.shape[1]} features, model {spec.name} takes "
                            f"{spec.input_dim}")
    if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
        raise PipelineError(f"{path}: labels outside 0..{spec.num_classes - 1} of model "
                            f"{spec.name}")

