"""Data sources: the lesson's spiral and a user's CSV (path or URL), with checks.

A data set here is a pandas DataFrame of feature columns plus one label column. A feature
column holds numbers, or categories (text, or numbers the user lists in ``data.categorical``);
a cell that pandas reads as missing (empty, ``NA``, ``NaN``, ...) is kept as NaN when
``data.missing`` accepts it. Everything that can be wrong with a user's file is reported as a
:class:`PipelineError` naming the file, column or value.
"""
from __future__ import annotations

import csv
import io
from typing import Any, NamedTuple, Sequence

import numpy as np

from nnpipe.core.errors import PipelineError, short

SPIRAL_FEATURES = ("X1", "X2")
SPIRAL_TARGET = "color"


def make_spiral(samples_per_class: int, classes: Sequence[str], noise: float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The cs231n spiral: ``X: (N*K, 2) float64`` and labels ``(N*K,)`` in class order.

    For arm k: r = linspace(0, 1, N), t = linspace(4k, 4(k+1), N) + randn(N) * noise,
    x = (r sin t, r cos t), drawn from ``RandomState(seed)`` one arm after another.
    With seed 1234, N=500 and classes (c1, c3, c2) this is the lesson's spiral.csv.
    """
    rng = np.random.RandomState(seed)
    n = samples_per_class
    X = np.zeros((n * len(classes), 2))
    labels = np.empty(n * len(classes), dtype=object)
    radius = np.linspace(0.0, 1.0, n)
    for k, name in enumerate(classes):
        theta = np.linspace(4.0 * k, 4.0 * (k + 1), n) + rng.randn(n) * noise
        rows = slice(n * k, n * (k + 1))
        X[rows] = np.c_[radius * np.sin(theta), radius * np.cos(theta)]
        labels[rows] = name
    return X, labels.astype(str)


def spiral_frame(samples_per_class: int, classes: Sequence[str], noise: float,
                 seed: int) -> Any:
    """The spiral as the lesson's CSV table: columns X1, X2, color."""
    import pandas as pd

    X, labels = make_spiral(samples_per_class, classes, noise, seed)
    frame = pd.DataFrame(X, columns=list(SPIRAL_FEATURES))
    frame[SPIRAL_TARGET] = labels
    return frame


def parse_csv(data: bytes, source: str, text_columns: Sequence[str] = ()) -> Any:
    """Parse CSV bytes with pandas; the header must be a row of unique, non-empty names.

    ``text_columns`` are read as text (``2007`` stays ``"2007"``), the others as pandas
    infers; in both, pandas' missing-value cells (empty, ``NA``, ``NaN``, ...) are NaN.

    Every other non-blank line must have as many fields as the header: a row with more
    would make pandas take its first field as the index (shifting every column), a row with
    fewer is a malformed line (a field left out), both refused naming the line. An empty
    field (``1,,c1`` or a trailing ``1,2,``) is a missing value, which the checks of the
    columns report (:func:`validate_frame`). Blank lines are skipped, as pandas does.
    """
    import pandas as pd

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PipelineError(f"{source}: not a UTF-8 text CSV file") from None
    if "\x00" in text:
        raise PipelineError(f"{source}: not a text CSV file (contains NUL bytes)")
    header = next(csv.reader(io.StringIO(text)), None)
    if not header or all(not name.strip() for name in header):
        raise PipelineError(f"{source}: empty file, expected a CSV with a header row")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            hint = "; the first row looks like data: the file needs a header row" \
                if _is_number(name) else ""
            raise PipelineError(f"{source}: duplicate column name '{short(name)}'{hint}")
        seen.add(name)
    check_field_counts(data, text, len(header), source)
    try:
        return pd.read_csv(io.StringIO(text), dtype={name: str for name in text_columns})
    except (ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{source}: not a readable CSV ({first})") from None


def check_field_counts(data: bytes, text: str, width: int, source: str) -> None:
    """A one-line error naming the first line (the header is line 1) whose number of fields
    is not ``width``; blank lines are skipped. ``text`` is ``data`` decoded. Without quotes
    (or lone CR line ends) the commas of ``data`` are counted with NumPy, a fraction of
    pandas' parse time; otherwise the csv module reads ``text``."""
    plain = b'"' not in data and (b"\r" not in data
                                  or data.count(b"\r") == data.count(b"\r\n"))
    found = _first_bad_plain(data, width) if plain else _first_bad_quoted(text, width)
    if found:
        line, fields = found
        raise PipelineError(f"{source}: line {line} has {fields} field{'s' * (fields != 1)}, "
                            f"the header has {width}")


_CHUNK = 1 << 24  # bytes of whole lines counted at once (bounded memory for a large file)


def _first_bad_plain(data: bytes, width: int) -> tuple[int, int] | None:
    """Unquoted CSV bytes: commas per line (one byte each in UTF-8, as newlines are)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    start, first_line = 0, 1
    while start < len(buf):
        stop = data.find(b"\n", min(start + _CHUNK, len(buf)) - 1) + 1 or len(buf)
        chunk = buf[start:stop]
        ends = np.flatnonzero(chunk == ord("\n"))  # (lines,)
        if not len(ends) or ends[-1] != len(chunk) - 1:
            ends = np.append(ends, len(chunk))  # the last line, without a newline
        commas = np.searchsorted(np.flatnonzero(chunk == ord(",")), ends)
        per_line = np.diff(commas, prepend=0)  # (lines,)
        starts = np.concatenate(([0], ends[:-1] + 1))
        for i in np.flatnonzero(per_line != width - 1):
            if chunk[starts[i]:ends[i]].tobytes().strip(b" \t\r"):  # not a blank line
                return first_line + int(i), int(per_line[i]) + 1
        start, first_line = stop, first_line + len(ends)
    return None


def _is_blank(fields: Sequence[str]) -> bool:
    return len(fields) <= 1 and not "".join(fields).strip(" \t\r")


def _first_bad_quoted(text: str, width: int) -> tuple[int, int] | None:
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # a field may be as long as the file
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if len(row) != width and not _is_blank(row):
                return start, len(row)
            start = reader.line_num + 1
    except csv.Error:
        return None  # pandas reports what the csv module cannot read
    finally:
        csv.field_size_limit(limit)
    return None


def _shown(value: Any) -> str:
    """A cell value as a user would write it: nan, inf, 'abc'."""
    if isinstance(value, np.generic):
        value = value.item()
    return short(repr(value) if isinstance(value, float) else repr(str(value)))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


MAX_LEVELS = 1000  # categories of one categorical column (each is an input of the model)
MISSING_HINT = "set data.missing to drop, mean, median or most_frequent to accept missing cells"


class CheckedData(NamedTuple):
    """A validated table: numeric feature columns (float64, NaN where missing), categorical
    ones (str, NaN where missing) and the target column (str); the class counts and the
    names of the categorical columns, in data.features order."""
    frame: Any
    class_counts: dict[str, int]
    categorical: tuple[str, ...] = ()


def _row(mask: Any) -> int:
    """The CSV line (header = line 1) of the first True of a boolean mask."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 2


def _check_columns(frame: Any, names: Sequence[str], target: str, source: str) -> None:
    if target in names:
        raise PipelineError(f"{source}: data.target '{short(target)}' is also listed in "
                            "data.features")
    columns = [str(c) for c in frame.columns]
    for name in [*names, target]:
        if name not in columns:
            hint = "; the first row looks like data: the file needs a header row" \
                if any(_is_number(c) for c in columns) else ""
            raise PipelineError(f"{source}: column '{short(name)}' not found "
                                f"(columns: {short(', '.join(columns) or 'none', 200)}){hint}")
    if len(frame) == 0:
        raise PipelineError(f"{source}: has a header but no data rows")


def _is_numeric(values: Any) -> bool:
    """pandas read the column as numbers (booleans are categories)."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def feature_column(values: Any, name: str, source: str, declared: bool,
                   missing: str) -> tuple[Any, bool]:
    """One feature column checked: (float64 numbers or str categories, NaN where missing;
    whether it is categorical). Categorical: ``declared``, or text in every non-missing cell."""
    import pandas as pd

    absent = values.isna().to_numpy()
    if absent.all():
        raise PipelineError(f"{source}: column '{name}' has no values (every cell is empty, "
                            "NA or NaN)")
    if missing == "error" and absent.any():
        raise PipelineError(f"{source}: column '{name}' row {_row(absent)} is missing (empty, "
                            f"NA or nan); {MISSING_HINT}")
    text = None if _is_numeric(values) and not declared else \
        values.astype(object).where(absent, values.astype(str))  # NaN stays NaN
    numbers = values if text is None else pd.to_numeric(text, errors="coerce")
    numbers = numbers.to_numpy(dtype=np.float64)
    if text is not None and (declared or np.isnan(numbers[~absent]).all()):
        levels = text[~absent].nunique()
        if levels > MAX_LEVELS:
            raise PipelineError(f"{source}: categorical column '{name}' has {levels} categories, "
                                f"more than the {MAX_LEVELS} allowed")
        return text, True
    bad = ~np.isfinite(numbers) & ~absent
    if bad.any():
        row = _row(bad)
        hint = f", or categories (list '{name}' in data.categorical)" \
            if np.isnan(numbers[row - 2]) else ""
        raise PipelineError(f"{source}: column '{name}' row {row} has value "
                            f"{_shown(values.iloc[row - 2])}; features must be finite numbers"
                            f"{hint}")
    return numbers, False


def validate_frame(frame: Any, features: Sequence[str], target: str, source: str,
                   categorical: Sequence[str] = (), missing: str = "error") -> CheckedData:
    """Check the columns a run needs and return just those: numeric features as float64,
    categorical ones and the target as str. ``missing`` (data.missing) ``error`` refuses a
    missing feature cell; any other policy keeps it (NaN) for split or scale_encode."""
    import pandas as pd

    _check_columns(frame, features, target, source)
    out = pd.DataFrame(index=range(len(frame)))
    kinds = []
    for name in features:
        out[name], is_categorical = feature_column(frame[name].reset_index(drop=True), name,
                                                   source, name in categorical, missing)
        kinds += [name] * is_categorical
    labels = frame[target]
    if labels.isna().any():
        raise PipelineError(f"{source}: column '{target}' row {_row(labels.isna())} has no label")
    out[target] = labels.astype(str).to_numpy()
    counts = out[target].value_counts().sort_index()
    if len(counts) < 2:
        raise PipelineError(f"{source}: column '{target}' has {len(counts)} class "
                            f"({short(', '.join(map(str, counts.index)))}); at least 2 are needed")
    return CheckedData(out, {str(k): int(v) for k, v in counts.items()}, tuple(kinds))
