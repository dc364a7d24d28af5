"""Inference on new points from the saved artifacts alone (NumPy; no torch, no params.yaml).

    python -m nnpipe.predict --model torch_mlp X1=0.1 X2=0.1
    python -m nnpipe.predict --model numpy_mlp --input new.csv [--output predictions.csv]
    python -m nnpipe.predict --model linear --json X1=0.1 X2=0.1

Exit code 2 with a one-line message for unknown, missing or repeated features, values
that are not finite numbers, an --input that is not a regular file of at most --max-mb,
--output without --input or naming a directory, and missing or broken artifacts.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Sequence

import numpy as np

from nnpipe import models

from nnpipe.core import cli, files
from nnpipe.core.errors import PipelineError, short

def parse_assignments(pairs: Sequence[str], features: Sequence[str]) -> np.ndarray:
    """``["X1=0.1", "X2=0.1"]`` -> one row ``(1, D)`` in the model's feature order."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise PipelineError(f"argument {short(repr(pair))}: expected NAME=VALUE, "
                                f"e.g. {features[0]}=0.1")
        if name not in features:
            raise PipelineError(f"unknown feature '{short(name)}' "
                                f"(the model takes {short(', '.join(features), 200)})")
        if name in values:
            raise PipelineError(f"feature '{name}' given twice")
        values[name] = _number(text, f"feature '{name}'")
    missing = [f for f in features if f not in values]
    if missing:
        raise PipelineError(f"missing feature(s) {', '.join(missing)} "
                            f"(the model takes {', '.join(features)})")
    return np.array([[values[f] for f in features]])


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PipelineError(f"{what}: {short(repr(text))} is not a number") from None
    if not math.isfinite(value):
        raise PipelineError(f"{what}: {short(repr(text))} is not a finite number")
    return value


def read_inputs(path: str, features: Sequence[str], max_mb: float = 1024) -> np.ndarray:
    """Rows ``(N, D)`` of a CSV holding (at least) the model's feature columns."""
    from nnpipe import data

    raw = data.read_source(path, timeout=30, max_bytes=int(max_mb * 2**20), what="--input",
                           limit="--max-mb")
    frame = data.parse_csv(raw, path)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise PipelineError(f"{path}: missing feature column(s) {', '.join(missing)}")
    if len(frame) == 0:
        raise PipelineError(f"{path}: has a header but no data rows")
    X = np.empty((len(frame), len(features)))
    for j, name in enumerate(features):
        for i, value in enumerate(frame[name].tolist()):
            X[i, j] = _number(str(value), f"{path}: column '{name}' row {i + 2}")
    return X


def predict(model: models.LoadedModel, X_raw: np.ndarray) -> Any:
    """A DataFrame: the predicted label, its probability and every class's probability."""
    import pandas as pd

    proba = model.predict_proba(model.preprocessor.transform(X_raw))  # (N, C)
    classes = model.preprocessor.classes
    best = proba.argmax(axis=1)
    frame = pd.DataFrame(X_raw, columns=list(model.preprocessor.features))
    frame["label"] = np.asarray(classes)[best]
    frame["probability"] = proba[np.arange(len(best)), best]
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = proba[:, i]
    return frame


def to_records(frame: Any, model: models.LoadedModel) -> list[dict[str, Any]]:
    """JSON-ready rows: the input features, the label, its probability, every class's."""
    pre = model.preprocessor
    return [{"features": {f: float(row[f]) for f in pre.features},
             "label": str(row["label"]), "probability": float(row["probability"]),
             "probabilities": {c: float(row[f"p_{c}"]) for c in pre.classes}}
            for row in frame.to_dict(orient="records")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnpipe.predict",
                                     description="Predict classes for new points.")
    parser.add_argument("--model", required=True,
                        help="a model's name: a directory of --models-dir (see dvc.yaml's models)")
    parser.add_argument("--models-dir", default="models", help="where the model directories are")
    parser.add_argument("--input", help="CSV of points to predict (one row each)")
    parser.add_argument("--output", help="with --input: write the predictions CSV here")
    parser.add_argument("--max-mb", type=float, default=1024,
                        help="largest --input CSV read, in MB (default 1024)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("features", nargs="*", metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    with cli.stage("predict"):
        if bool(args.input) == bool(args.features):
            raise PipelineError("give either NAME=VALUE features or --input CSV (one of them)")
        if args.output and not args.input:
            raise PipelineError("--output needs --input (it writes the predictions of a CSV)")
        if args.output and os.path.isdir(args.output):
            raise PipelineError(f"--output {short(args.output, 200)}: is a directory, "
                                "give a file path")
        model = models.load(models.find(args.models_dir, args.model))
        features = model.preprocessor.features
        X = read_inputs(args.input, features, args.max_mb) if args.input else \
            parse_assignments(args.features, features)
        result = predict(model, X)
        if args.json:
            print(json.dumps({"model": args.model, "predictions": to_records(result, model)},
                             sort_keys=True))
        elif args.input:
            if args.output:
                files.write_csv(args.output, result)
            else:
                sys.stdout.write(result.to_csv(index=False, lineterminator="\n"))
        else:
            row = result.iloc[0]
            print(f"The probability that you have {row['label']} is "
                  f"{row['probability'] * 100:.0f}% ({args.model})")


if __name__ == "__main__":
    cli.run_command(main)
