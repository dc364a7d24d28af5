"""plot_model: one model's decision boundary (train | test; per-class ROC and precision-recall
on test where the boundary cannot be drawn), training curves and confusion matrix."""
from __future__ import annotations

import logging
import os

import numpy as np

from nnpipe import models, plots
from nnpipe.core import files

PARAMS = ("plot",)
LOG = "plot_model {name}"
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--name", required=True, help="model name (as in evaluate)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--train", required=True, help="processed train split (.npz)")
    parser.add_argument("--test", required=True, help="processed test split (.npz)")
    parser.add_argument("--curves", required=True, help="the training stage's DVCLive directory")
    parser.add_argument("--confusion", required=True,
                        help="the model's confusion JSON written by evaluate")
    parser.add_argument("--boundary-png", required=True)
    parser.add_argument("--curves-png", required=True)
    parser.add_argument("--confusion-png", required=True)


def run(args, p) -> str:
    model = models.load(args.model_dir)
    train, test = files.read_xy(args.train), files.read_xy(args.test)
    curves = read_curves(args.curves, models.CURVES)
    confusion = plots.confusion_for(files.read_json(args.confusion), args.name, args.confusion)
    note = plots.boundary_note(args.name, model.preprocessor.numeric,
                               model.preprocessor.categorical)
    if note is None:
        boundary = plots.decision_boundary(model.predict_proba, train, test, args.name,
                                           p.plot.grid_size, p.plot.max_points)
    else:
        log.info("%s: drew per-class ROC and precision-recall on test instead", note)
        boundary = plots.class_curves(test[1], model.predict_proba(test[0]),
                                      model.preprocessor.classes, args.name, note)
    figures = {args.boundary_png: boundary,
               args.curves_png: plots.training_curves(curves, args.name),
               args.confusion_png: plots.confusion_matrix(confusion["matrix"],
                                                          confusion["classes"], args.name)}
    for path, figure in figures.items():
        files.save_figure(path, figure)
    return f"wrote {args.boundary_png}, {args.curves_png}, {args.confusion_png}"


def read_curves(directory: str, names: tuple[str, ...]) -> dict:
    """DVCLive's ``plots/metrics/<name>.tsv`` per figure as one table: ``epoch`` (its step),
    the figures, and ``kept`` (1 on the epoch of metrics.json's ``kept``)."""
    tables = {name: files.read_numeric_csv(os.path.join(directory, "plots", "metrics",
                                                        f"{name}.tsv"),
                                           required=("step", name), delimiter="\t")
              for name in names}
    curves = {"epoch": tables[names[0]]["step"]}
    curves.update({name: table[name] for name, table in tables.items()})
    kept = files.read_json(os.path.join(directory, "metrics.json")).get("kept", {})
    curves["kept"] = (curves["epoch"] == kept.get("epoch")).astype(np.int64)
    return curves

