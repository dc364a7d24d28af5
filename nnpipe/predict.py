"""Inference on new rows from the saved artifacts alone (NumPy; no torch, no params.yaml).

    python -m nnpipe.predict --model torch_mlp X1=0.1 X2=0.1
    python -m nnpipe.predict --model torch_mlp island=Biscoe sex= bill_length_mm=45 ...
    python -m nnpipe.predict --model numpy_mlp --input new.csv|-|URL [--output predictions.csv|-]
    python -m nnpipe.predict --model linear --json X1=0.1 X2=0.1

A row is raw, as in the training CSV, and each value is read by the type fetch gave its column
(nnpipe.schema: the same parser and rules): a numeric input is a number (``1_000`` is not), a
categorical one the text as given (``flag=true`` is the category "true"), and an empty,
whitespace-only, NA or NaN value is missing. The model's state (config.json) applies what
scale_encode fit: the imputer (a missing value needs a model trained with data.missing=mean,
median or most_frequent), the scaler and the one-hot encoder (a category the train split never
had is all zeros with data.handle_unknown=ignore, with a warning on stderr naming the column and
value, and in --json's "warnings"; refused with error). ``--input -`` reads stdin; a URL is read
whole within 30 s. A row's probabilities are the same bytes whatever rows come with it
(models.predict_proba). One row prints ``predicted: LABEL (P%, MODEL)``; the CSV written is the
model's input columns, then label, probability and p_<class>; --json keeps the inputs apart
under "features".

Exit code 2 with a one-line message for unknown, missing or repeated features, numeric values
that are not finite numbers, a missing value or an unknown category the model refuses, rows
so far from the training data that their scaled values or probabilities are not finite, an
--input that is not a regular file of at most --max-mb or has a row whose number of fields
is not the header's, --output without --input or naming anything but a regular file (a
symlink, a device, a FIFO, a directory) or naming the --input file itself (through a link or
a redirected stdin too), a CSV output for a model with an input named like one of predict's
columns, an output that cannot be written (a full disk: nothing half-written), and missing
or broken artifacts. A bad --max-mb is a usage error.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from nnpipe import data, models, source
from nnpipe.core import cli, files, tables
from nnpipe.core.errors import PipelineError, short
from nnpipe.preprocess import Preprocessor


def _csv_row(names: Sequence[str], values: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows([names, values])
    return buffer.getvalue().encode()


def parse_assignments(pairs: Sequence[str], state: Preprocessor) -> Any:
    """``["X1=0.1", "X2=0.1"]`` -> one raw row of the model's inputs (a DataFrame), each
    value read by the type fetch gave its column (the same parser and rules)."""
    inputs = state.inputs
    values: dict[str, str] = {}
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
        values[name] = text
    missing = [f for f in inputs if f not in values]
    if missing:
        raise PipelineError(f"missing feature(s) {', '.join(missing)} "
                            f"(the model takes {', '.join(inputs)})")
    raw = _csv_row(inputs, [values[name] for name in inputs])
    table = data.read_columns(raw, "features", state.numeric, state.categorical,
                              cell=lambda name, line: f"feature '{name}'")
    return tables.to_frame(table, inputs)


def read_inputs(path: str, state: Preprocessor, max_mb: float = 1024) -> Any:
    """The raw rows of a CSV holding (at least) the model's input columns, as a DataFrame,
    each column read by the type fetch gave it."""
    raw = source.read_source(path, timeout=30, max_bytes=int(max_mb * 2**20), what="--input",
                             limit="--max-mb")
    return tables.to_frame(data.read_columns(raw, path, state.numeric, state.categorical),
                           state.inputs)


def _cell(source: str | None) -> Callable[[int, str], str]:
    if source:
        return lambda row, name: f"{source}: column '{name}' row {row + 2}"
    return lambda row, name: f"feature '{name}'"


class Prediction(NamedTuple):
    """What predict computed, apart from the inputs it was given (so no name can clash)."""
    inputs: Any              # the raw inputs, a DataFrame of the model's input columns
    labels: np.ndarray       # (N,) the predicted class of each row
    proba: np.ndarray        # (N, C) every class's probability, in ``classes`` order
    classes: tuple[str, ...]

    def best(self) -> np.ndarray:
        """(N,) the predicted class's probability."""
        return self.proba.max(axis=1)


def predict(model: models.LoadedModel, rows: Any, source: str | None = None) -> Prediction:
    """The predicted label and every class's probability of each raw row.

    ``rows``: raw rows (a DataFrame or column -> values; an all-numeric model also takes an
    ``(N, D)`` array). A row whose scaled values or probabilities are not finite (a point far
    beyond the training data, e.g. X1=1e308) is refused naming it: row i of ``source``, or
    the point. A row's probabilities do not depend on the other rows (models.predict_proba).
    """
    pre = model.preprocessor
    table = pre.table(rows)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # checked right after
        scaled = pre.transform(table, _cell(source))  # (N, D)
        _check_finite(scaled, table, source, "its scaled values are")
        proba = model.predict_proba(scaled)  # (N, C)
        _check_finite(proba, table, source, "the model's probabilities are")
    labels = np.asarray(pre.classes)[proba.argmax(axis=1)]
    return Prediction(table, labels, proba, tuple(pre.classes))


def own_columns(inputs: Sequence[str], classes: Sequence[str]) -> list[str]:
    """The columns predict adds to a CSV: label, probability, p_<class> per class; refused in
    one line if the model takes an input of one of those names (it would be overwritten)."""
    own = ["label", "probability", *(f"p_{c}" for c in classes)]
    clash = [name for name in own if name in inputs]
    if clash:
        raise PipelineError(f"the model's input column '{short(clash[0])}' has the name of a "
                            f"column predict writes ({short(', '.join(own), 200)}): a CSV "
                            "cannot hold both; use --json, which keeps the inputs apart")
    return own


def to_frame(result: Prediction) -> Any:
    """The CSV's rows: the raw inputs, the label, its probability, every class's."""
    own = own_columns(list(result.inputs.columns), result.classes)
    frame = result.inputs.copy()
    frame[own[0]], frame[own[1]] = result.labels, result.best()
    for i, name in enumerate(own[2:]):
        frame[name] = result.proba[:, i]
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
    for name, levels in state.encoder.categories.items():
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


def to_records(result: Prediction) -> list[dict[str, Any]]:
    """JSON-ready rows: the raw inputs, the label, its probability, every class's."""
    best = result.best()
    return [{"features": {name: _plain(value) for name, value in features.items()},
             "label": str(result.labels[i]), "probability": float(best[i]),
             "probabilities": {c: float(p) for c, p in zip(result.classes, result.proba[i])}}
            for i, features in enumerate(result.inputs.to_dict(orient="records"))]


def _max_mb(text: str) -> float:
    """--max-mb: a finite number of MB from source.MIN_MB (one byte) to source.MAX_MB
    (argparse: a usage error)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and source.MIN_MB <= value <= source.MAX_MB):
        raise argparse.ArgumentTypeError(f"{short(repr(text))} is not a number of MB from "
                                         f"{source.MIN_MB:g} (one byte) to {source.MAX_MB}")
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
    parser.add_argument("--input", help="CSV of rows to predict (the model's input columns; "
                        "- for stdin)")
    parser.add_argument("--output", help="with --input: write the predictions (CSV, or JSON "
                        "with --json) here (a new or regular file; - for stdout, the default)")
    parser.add_argument("--max-mb", type=_max_mb, default=1024,
                        help=f"largest --input CSV read, in MB (default 1024, at most "
                             f"{source.MAX_MB})")
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
            _check_not_the_input(output, args.input)
        model = models.load(models.find(args.models_dir, args.model))
        state = model.preprocessor
        if args.input and not args.json:
            own_columns(state.inputs, state.classes)  # a clash is refused before any reading
        rows = read_inputs(args.input, state, args.max_mb) if args.input else \
            parse_assignments(args.features, state)
        result = predict(model, rows, args.input)
        warnings = unseen(result.inputs, state, args.input)
        for warning in warnings:
            print(f"predict: warning: {warning}", file=sys.stderr)
        _write(result, args, output, warnings)


def _check_not_the_input(output: str, source: str) -> None:
    """Refuse an --output that is the --input file (a link to it, or stdin redirected from it):
    the predictions would replace the rows they came from."""
    from nnpipe.source import STDIN, is_url

    if is_url(source):
        return
    try:
        written = os.stat(output)
        read = os.fstat(sys.stdin.fileno()) if source == STDIN else os.stat(source)
    except (OSError, ValueError):  # no output yet, or no input: read_inputs names it
        return
    if (written.st_dev, written.st_ino) == (read.st_dev, read.st_ino):
        raise PipelineError(f"--output {output}: is the --input file ({source}): refusing to "
                            "replace the rows with their predictions")


def _write(result: Prediction, args: argparse.Namespace, output: str | None,
           warnings: list[str]) -> None:
    """The predictions as JSON, a CSV (--input) or one line, to --output or stdout."""
    if args.json:
        text = json.dumps({"model": args.model, "predictions": to_records(result),
                           "warnings": warnings}, sort_keys=True, allow_nan=False) + "\n"
    elif args.input:
        text = to_frame(result).to_csv(index=False, lineterminator="\n")
    else:
        text = f"predicted: {result.labels[0]} ({result.best()[0] * 100:.0f}%, {args.model})\n"
    if output:
        files.write_text(output, text)
    else:
        _emit(text)


if __name__ == "__main__":
    cli.run_command(main)
