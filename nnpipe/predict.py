"""Inference on new points from the saved artifacts alone (NumPy; no torch, no params.yaml).

    python -m nnpipe.predict --model torch_mlp X1=0.1 X2=0.1
    python -m nnpipe.predict --model numpy_mlp --input new.csv [--output predictions.csv|-]
    python -m nnpipe.predict --model linear --json X1=0.1 X2=0.1

Exit code 2 with a one-line message for unknown, missing or repeated features, values
that are not finite numbers, points so far from the training data that their scaled values
or probabilities are not finite, an --input that is not a regular file of at most --max-mb
or has a row whose number of fields is not the header's, --output without --input or naming
anything but a regular file (a symlink, a device, a FIFO, a directory), an output that cannot
be written (a full disk: nothing half-written), and missing or broken artifacts. A bad
--max-mb is a usage error.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

import numpy as np

from nnpipe import models
from nnpipe.core import cli, files
from nnpipe.core.errors import PipelineError, short

MAX_MB = 1 << 20  # the largest --max-mb, as fetch.max_mb's


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


def predict(model: models.LoadedModel, X_raw: np.ndarray, source: str | None = None) -> Any:
    """A DataFrame: the predicted label, its probability and every class's probability.

    A row whose scaled values or probabilities are not finite (a point far beyond the
    training data, e.g. X1=1e308) is refused naming it: row i of ``source``, or the point.
    """
    import pandas as pd

    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # checked right after
        scaled = model.preprocessor.transform(X_raw)  # (N, D)
        _check_finite(scaled, X_raw, model, source, "its scaled values are")
        proba = model.predict_proba(scaled)  # (N, C)
        _check_finite(proba, X_raw, model, source, "the model's probabilities are")
    classes = model.preprocessor.classes
    best = proba.argmax(axis=1)
    frame = pd.DataFrame(X_raw, columns=list(model.preprocessor.features))
    frame["label"] = np.asarray(classes)[best]
    frame["probability"] = proba[np.arange(len(best)), best]
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = proba[:, i]
    return frame


def _check_finite(values: np.ndarray, X_raw: np.ndarray, model: models.LoadedModel,
                  source: str | None, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        i = int(bad[0])
        point = ", ".join(f"{name}={value!r}" for name, value
                          in zip(model.preprocessor.features, X_raw[i].tolist()))
        where = f"{source}: row {i + 2} ({short(point, 200)})" if source else short(point, 200)
        raise PipelineError(f"{where}: {what} not finite; the point is too far from the "
                            "data the model was trained on")


def to_records(frame: Any, model: models.LoadedModel) -> list[dict[str, Any]]:
    """JSON-ready rows: the input features, the label, its probability, every class's."""
    pre = model.preprocessor
    return [{"features": {f: float(row[f]) for f in pre.features},
             "label": str(row["label"]), "probability": float(row["probability"]),
             "probabilities": {c: float(row[f"p_{c}"]) for c in pre.classes}}
            for row in frame.to_dict(orient="records")]


def _max_mb(text: str) -> float:
    """--max-mb: a finite number of MB > 0 and at most MAX_MB (argparse: a usage error)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_MB):
        raise argparse.ArgumentTypeError(f"{short(repr(text))} is not a number of MB > 0 and "
                                         f"at most {MAX_MB}")
    return value


def _emit(text: str) -> None:
    """Write to stdout now, so that a full disk or a closed pipe is one line, not a traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise PipelineError(f"stdout: cannot write ({exc.strerror})") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnpipe.predict",
                                     description="Predict classes for new points.")
    parser.add_argument("--model", required=True,
                        help="a model's name: a directory of --models-dir (see dvc.yaml's models)")
    parser.add_argument("--models-dir", default="models", help="where the model directories are")
    parser.add_argument("--input", help="CSV of points to predict (one row each)")
    parser.add_argument("--output", help="with --input: write the predictions CSV here "
                        "(a new or regular file; - for stdout, the default)")
    parser.add_argument("--max-mb", type=_max_mb, default=1024,
                        help=f"largest --input CSV read, in MB (default 1024, at most {MAX_MB})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("features", nargs="*", metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    with cli.stage("predict"):
        if bool(args.input) == bool(args.features):
            raise PipelineError("give either NAME=VALUE features or --input CSV (one of them)")
        if args.output and not args.input:
            raise PipelineError("--output needs --input (it writes the predictions of a CSV)")
        output = None if args.output in (None, "-") else args.output
        if output:
            files.check_replaceable(output, "--output")
        model = models.load(models.find(args.models_dir, args.model))
        features = model.preprocessor.features
        X = read_inputs(args.input, features, args.max_mb) if args.input else \
            parse_assignments(args.features, features)
        result = predict(model, X, args.input)
        if args.json:
            _emit(json.dumps({"model": args.model, "predictions": to_records(result, model)},
                             sort_keys=True, allow_nan=False) + "\n")
        elif output:
            files.write_csv(output, result)
        elif args.input:
            _emit(result.to_csv(index=False, lineterminator="\n"))
        else:
            row = result.iloc[0]
            _emit(f"The probability that you have {row['label']} is "
                  f"{row['probability'] * 100:.0f}% ({args.model})\n")


if __name__ == "__main__":
    cli.run_command(main)
