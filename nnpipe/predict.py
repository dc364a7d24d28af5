"""Inference on new rows from the saved artifacts alone (NumPy; no torch, no params.yaml).

    python -m nnpipe.predict --model torch_mlp X1=0.1 X2=0.1
    python -m nnpipe.predict --model torch_mlp island=Biscoe sex= bill_length_mm=45 ...
    python -m nnpipe.predict --model numpy_mlp --input new.csv [--output predictions.csv|-]
    python -m nnpipe.predict --model linear --json X1=0.1 X2=0.1

A row is raw, as in the training CSV: a numeric input is a number, a categorical one any text,
and an empty, NA or NaN value is missing. The model's state (config.json) applies what
scale_encode fit: the imputer (a missing value needs a model trained with data.missing=mean,
median or most_frequent), the scaler and the one-hot encoder (a category the train split never
had is all zeros with data.handle_unknown=ignore, with a warning on stderr naming the column and
value, and in --json's "warnings"; refused with error). One row prints
``predicted: LABEL (P%, MODEL)``.

Exit code 2 with a one-line message for unknown, missing or repeated features, numeric values
that are not finite numbers, a missing value or an unknown category the model refuses, rows
so far from the training data that their scaled values or probabilities are not finite, an
--input that is not a regular file of at most --max-mb or has a row whose number of fields
is not the header's, --output without --input or naming anything but a regular file (a
symlink, a device, a FIFO, a directory), an output that cannot be written (a full disk:
nothing half-written), and missing or broken artifacts. A bad --max-mb is a usage error.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, Sequence

import numpy as np

from nnpipe import models
from nnpipe.core import cli, files
from nnpipe.core.errors import PipelineError, short
from nnpipe.preprocess import Preprocessor, as_text

MAX_MB = 1 << 20  # the largest --max-mb, as fetch.max_mb's
# pandas' default na_values: the cells fetch (and --input) read as missing.
MISSING_CELLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                           "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None",
                           "n/a", "nan", "null"})
IMPUTES = "a missing value needs a model trained with data.missing=mean, median or most_frequent"


def _value(text: str, numeric: bool, state: Preprocessor, what: str) -> Any:
    """One raw value: a float (numeric input) or the text (categorical), NaN if missing."""
    if text in MISSING_CELLS:
        if state.fill:
            return math.nan
        problem = f": {short(repr(text))} is not a finite number" if numeric else " is missing"
        raise PipelineError(f"{what}{problem}; {IMPUTES} (this one: data.missing={state.missing})")
    return _number(text, what) if numeric else text


def parse_assignments(pairs: Sequence[str], state: Preprocessor) -> dict[str, list[Any]]:
    """``["X1=0.1", "X2=0.1"]`` -> one raw row (column -> [value]) of the model's inputs."""
    inputs = state.inputs
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise PipelineError(f"argument {short(repr(pair))}: expected NAME=VALUE, "
                                f"e.g. {inputs[0]}=0.1")
        if name not in inputs:
            raise PipelineError(f"unknown feature '{short(name)}' "
                                f"(the model takes {short(', '.join(inputs), 200)})")
        if name in values:
            raise PipelineError(f"feature '{name}' given twice")
        values[name] = _value(text, name not in state.categorical, state, f"feature '{name}'")
    missing = [f for f in inputs if f not in values]
    if missing:
        raise PipelineError(f"missing feature(s) {', '.join(missing)} "
                            f"(the model takes {', '.join(inputs)})")
    return {name: [values[name]] for name in inputs}


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PipelineError(f"{what}: {short(repr(text))} is not a number") from None
    if not math.isfinite(value):
        raise PipelineError(f"{what}: {short(repr(text))} is not a finite number")
    return value


def read_inputs(path: str, state: Preprocessor, max_mb: float = 1024) -> Any:
    """The raw rows of a CSV holding (at least) the model's input columns, as a DataFrame."""
    import pandas as pd

    from nnpipe import data, source

    raw = source.read_source(path, timeout=30, max_bytes=int(max_mb * 2**20), what="--input",
                           limit="--max-mb")
    frame = data.parse_csv(raw, path, text_columns=state.categorical)
    missing = [f for f in state.inputs if f not in frame.columns]
    if missing:
        raise PipelineError(f"{path}: missing feature column(s) {', '.join(missing)}")
    if len(frame) == 0:
        raise PipelineError(f"{path}: has a header but no data rows")
    out = pd.DataFrame(index=range(len(frame)))
    for name in state.inputs:
        column = frame[name].reset_index(drop=True)
        if name in state.categorical:
            text = as_text(column)
            if not state.fill and text.isna().any():
                row = int(np.flatnonzero(text.isna().to_numpy())[0])
                _value("", False, state, f"{path}: column '{name}' row {row + 2}")
            out[name] = text
        else:
            out[name] = [_value("nan" if isinstance(v, float) and math.isnan(v) else str(v),
                                True, state, f"{path}: column '{name}' row {i + 2}")
                         for i, v in enumerate(column.tolist())]
    return out


def _cell(source: str | None) -> Callable[[int, str], str]:
    if source:
        return lambda row, name: f"{source}: column '{name}' row {row + 2}"
    return lambda row, name: f"feature '{name}'"


def predict(model: models.LoadedModel, rows: Any, source: str | None = None) -> Any:
    """A DataFrame: the raw inputs, the predicted label, its probability and every class's.

    ``rows``: raw rows (a DataFrame or column -> values; an all-numeric model also takes an
    ``(N, D)`` array). A row whose scaled values or probabilities are not finite (a point far
    beyond the training data, e.g. X1=1e308) is refused naming it: row i of ``source``, or
    the point.
    """
    pre = model.preprocessor
    table = pre.table(rows)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # checked right after
        scaled = pre.transform(table, _cell(source))  # (N, D)
        _check_finite(scaled, table, source, "its scaled values are")
        proba = model.predict_proba(scaled)  # (N, C)
        _check_finite(proba, table, source, "the model's probabilities are")
    best = proba.argmax(axis=1)
    frame = table.copy()
    frame["label"] = np.asarray(pre.classes)[best]
    frame["probability"] = proba[np.arange(len(best)), best]
    for i, name in enumerate(pre.classes):
        frame[f"p_{name}"] = proba[:, i]
    return frame


def _check_finite(values: np.ndarray, table: Any, source: str | None, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        i = int(bad[0])
        point = ", ".join(f"{name}={_plain(value)!r}" for name, value in table.iloc[i].items())
        where = f"{source}: row {i + 2} ({short(point, 200)})" if source else short(point, 200)
        raise PipelineError(f"{where}: {what} not finite; the point is too far from the "
                            "data the model was trained on")


def unseen(frame: Any, state: Preprocessor, source: str | None = None) -> list[str]:
    """One warning per categorical column=value of ``frame`` (raw inputs) that the train split
    never had: under data.handle_unknown=ignore it is encoded as all zeros, so the answer is
    the model's guess without that input (a typo, ``dream`` for ``Dream``, included)."""
    warnings = []
    for name, levels in state.categories:
        values = frame[name]
        new = values[values.notna() & ~values.isin(levels)]
        for value in dict.fromkeys(new.tolist()):
            rows = [int(i) + 2 for i in new.index[new == value][:5]]
            where = f"{source}: column '{name}' row{'s' * (len(rows) > 1)} " \
                f"{', '.join(map(str, rows))}{', ...' * (int((new == value).sum()) > 5)}" \
                if source else f"feature '{name}'"
            near = [level for level in levels if level.casefold() == str(value).casefold()]
            hint = f"; did you mean {near[0]!r}?" if near else ""
            warnings.append(f"{where}: category {short(repr(value))} was not in the train split "
                            f"({short(', '.join(levels), 200)}): encoded as all zeros "
                            f"(data.handle_unknown=ignore){hint}")
    return warnings


def _plain(value: Any) -> Any:
    """An input value for JSON: a number, a string, or None (missing)."""
    if isinstance(value, str):
        return value
    return None if value is None or math.isnan(value) else float(value)


def to_records(frame: Any, model: models.LoadedModel) -> list[dict[str, Any]]:
    """JSON-ready rows: the raw inputs, the label, its probability, every class's."""
    pre = model.preprocessor
    return [{"features": {f: _plain(row[f]) for f in pre.inputs},
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
                                     description="Predict classes for new rows.")
    parser.add_argument("--model", required=True,
                        help="a model's name: a directory of --models-dir (see dvc.yaml's models)")
    parser.add_argument("--models-dir", default="models", help="where the model directories are")
    parser.add_argument("--input", help="CSV of rows to predict (the model's input columns)")
    parser.add_argument("--output", help="with --input: write the predictions (CSV, or JSON "
                        "with --json) here (a new or regular file; - for stdout, the default)")
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
        state = model.preprocessor
        rows = read_inputs(args.input, state, args.max_mb) if args.input else \
            parse_assignments(args.features, state)
        result = predict(model, rows, args.input)
        warnings = unseen(result, state, args.input)
        for warning in warnings:
            print(f"predict: warning: {warning}", file=sys.stderr)
        if args.json:
            text = json.dumps({"model": args.model, "predictions": to_records(result, model),
                               "warnings": warnings}, sort_keys=True, allow_nan=False) + "\n"
            if output:
                files.write_text(output, text)
            else:
                _emit(text)
        elif output:
            files.write_csv(output, result)
        elif args.input:
            _emit(result.to_csv(index=False, lineterminator="\n"))
        else:
            row = result.iloc[0]
            _emit(f"predicted: {row['label']} ({row['probability'] * 100:.0f}%, {args.model})\n")


if __name__ == "__main__":
    cli.run_command(main)
