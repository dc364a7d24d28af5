"""evaluate: every model on every split: metrics JSON, confusion matrices, test predictions."""
from __future__ import annotations

import logging
import os

from nnpipe import evaluation
from nnpipe.core import files

PARAMS = ()
log = logging.getLogger(__name__)
PAIRS = "registry"  # then --NAME DATA_DIR per model (dvc.yaml passes its ${models} registry)


def add_arguments(parser) -> None:
    parser.epilog = ("then --NAME DATA_DIR per model: MODELS_DIR/NAME is evaluated on "
                     "DATA_DIR/{train,val,test}.npz (dvc.yaml passes its ${models} registry)")
    parser.add_argument("--models-dir", required=True, help="holds one directory per model")
    parser.add_argument("--headline", required=True,
                        help="each model's test accuracy (dvc metric, shown first)")
    parser.add_argument("--metrics", required=True, help="overall figures (dvc metric)")
    parser.add_argument("--per-class", required=True, help="per-class figures (JSON in git)")
    parser.add_argument("--confusion-dir", required=True,
                        help="one <model>.json of confusion matrices per split, per model")
    parser.add_argument("--predictions-dir", required=True,
                        help="one <model>.csv of test predictions (actual, predicted) per model")
    parser.add_argument("--summary", required=True, help="markdown table of test figures")


def run(args, p) -> str:
    report = evaluation.evaluate_models(
        {name: (os.path.join(args.models_dir, name),
                {split: os.path.join(data, f"{split}.npz") for split in ("train", "val", "test")})
         for name, data in args.registry.items()})
    for name, frame in report.predictions.items():
        files.write_csv(os.path.join(args.predictions_dir, f"{name}.csv"), frame)
    for name, matrices in report.confusion.items():
        files.write_json(os.path.join(args.confusion_dir, f"{name}.json"), matrices)
    files.write_json(args.per_class, report.per_class)
    files.write_text(args.summary, report.summary)
    files.write_json(args.metrics, report.overall)
    files.write_json(args.headline, report.headline)
    for name, splits in report.overall.items():
        log.info("%-15s test accuracy %.4f  f1 %.4f", name, splits["test"]["accuracy"],
                 splits["test"]["f1"])
    return f"{len(report.overall)} models -> {args.metrics}"
