"""evaluate: every model on every split: metrics JSON, confusion matrices, test predictions."""
from __future__ import annotations

import argparse
import os

from nnpipe import params
from nnpipe.core import cli, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     epilog="then --NAME DATA_DIR per model: MODELS_DIR/NAME is "
                                            "evaluated on DATA_DIR/{train,val,test}.npz "
                                            "(dvc.yaml passes its ${models} registry)")
    parser.add_argument("--params", default="params.yaml")
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
    args, rest = parser.parse_known_args(argv)
    registry = cli.name_value_pairs(parser, rest)
    with cli.stage("evaluate") as log:
        p = params.load(args.params, "math")
        portable.pin(p.math.portable)
        from nnpipe import evaluation
        from nnpipe.core import files  # numpy/torch load here, after pinning
        report = evaluation.evaluate_models(
            {name: (os.path.join(args.models_dir, name),
                    {split: os.path.join(data, f"{split}.npz") for split in ("train", "val", "test")})
             for name, data in registry.items()})
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


if __name__ == "__main__":
    cli.run_command(main)
