"""Data sets: the lesson's spiral, and a user's CSV read once and typed (fetch).

:func:`read_typed` parses the CSV once (Arrow), types each column by :mod:`nnpipe.schema`'s
rules and applies the row policies (``data.missing``, ``data.missing_label``); anything wrong
with a user's file is a :class:`PipelineError` naming file, line, column or value.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, NamedTuple, Sequence

import numpy as np

from nnpipe import schema
from nnpipe.dataset import MISSING
from nnpipe.core.errors import PipelineError, short
from nnpipe.schema import Schema

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


def parse_header(data: bytes, source: str) -> list[str]:
    """The header row of CSV bytes: unique, non-empty names; the file must be UTF-8 text."""
    if data.find(b"\x00") >= 0:  # find: `in` walks a map (source.Raw) byte by byte
        raise PipelineError(f"{source}: not a text CSV file (contains NUL bytes)")
    first = data[:data.find(b"\n") + 1 or len(data)].split(b"\r")[0]
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), None)
    except UnicodeDecodeError:
        raise PipelineError(f"{source}: not a UTF-8 text CSV file") from None
    if not header or all(not name.strip() for name in header):
        raise PipelineError(f"{source}: empty file, expected a CSV with a header row")
    seen: set[str] = set()
    for name in (name for name in header if name in seen or seen.add(name)):  # a repeat
        hint = "; the first row looks like data: the file needs a header row" \
            if re.fullmatch(schema.NUMBER, name) else ""
        raise PipelineError(f"{source}: duplicate column name '{short(name)}'{hint}")
    return header


def check_field_counts(data: bytes, width: int, source: str) -> None:
    """A one-line error naming the first line (the header is line 1) whose number of fields
    is not ``width`` (more would shift columns, fewer leave a field out); blank lines are
    skipped. Without quotes or lone CR line ends the commas are counted with NumPy, a
    fraction of the parse's time; otherwise the csv module reads the text (strictly: an
    unterminated quote is refused)."""
    quoted, cr = data.find(b'"') >= 0, data.find(b"\r") >= 0
    data = bytes(data) if quoted or cr else data  # a map (source.Raw) has no count(), decode()
    plain = not quoted and (not cr or data.count(b"\r") == data.count(b"\r\n"))
    found = _first_bad_plain(data, width) if plain else _first_bad_quoted(data, width, source)
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


def _first_bad_quoted(data: bytes, width: int, source: str) -> tuple[int, int] | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PipelineError(f"{source}: not a UTF-8 text CSV file") from None
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # a field may be as long as the file
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if len(row) != width and not _is_blank(row):
                return start, len(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise PipelineError(f"{source}: not a readable CSV (line {start}: {exc})") from None
    finally:
        csv.field_size_limit(limit)
    return None


def _parse(raw: bytes, header: Sequence[str], columns: Sequence[str], text: Sequence[str],
           source: str, coded: Sequence[str] = ()) -> Any:
    """schema.arrow_read, with a row of another field count than the header named by its line
    (counted before a quoted file's parse, which a lone quote would derail; after a failed
    parse otherwise, so a good file is parsed once)."""
    if raw.find(b'"') >= 0:
        check_field_counts(raw, len(header), source)
    try:
        return schema.arrow_read(raw, header, columns, text, source, coded)
    except PipelineError:
        check_field_counts(raw, len(header), source)
        raise


MISSING_HINT = (f"set data.missing to {', '.join(MISSING[1:-1])} or {MISSING[-1]} to accept "
                "missing cells")


class Typed(NamedTuple):
    """fetch's result: the typed table (an Arrow table of the feature columns, float64 or
    string, and the target, string; missing cells null), its schema, and one line per row
    policy that dropped rows."""
    table: Any
    schema: Schema
    notes: tuple[str, ...]


def _check_columns(header: Sequence[str], names: Sequence[str], target: str,
                   source: str) -> None:
    if target in names:
        raise PipelineError(f"{source}: data.target '{short(target)}' is also listed in "
                            "data.features")
    for name in [*names, target]:
        if name not in header:
            hint = "; the first row looks like data: the file needs a header row" \
                if any(re.fullmatch(schema.NUMBER, c) for c in header) else ""
            raise PipelineError(f"{source}: column '{short(name)}' not found "
                                f"(columns: {short(', '.join(header) or 'none', 200)}){hint}")


def _null(values: Any) -> np.ndarray:
    return values.is_null().to_numpy(zero_copy_only=False)


def read_typed(raw: bytes, source: str, features: Sequence[str], target: str,
               categorical: Sequence[str] = (), missing: str = "error",
               missing_label: str = "error") -> Typed:
    """Parse the source CSV once and type it by the rules of :mod:`nnpipe.schema`, then apply
    the row policies: ``missing`` (data.missing) ``error`` refuses a missing feature cell,
    ``drop`` drops its row, the others keep it (null) for scale_encode's imputer;
    ``missing_label`` (data.missing_label) ``error`` refuses a row with no label, ``drop``
    drops it."""
    header = parse_header(raw, source)
    _check_columns(header, features, target, source)
    table = _parse(raw, header, [*features, target], [*categorical, target], source, [target])
    if table.num_rows == 0:
        raise PipelineError(f"{source}: has a header but no data rows")
    classes, codes = _label_codes(table[target])
    no_label = codes < 0
    if missing_label == "error" and no_label.any():
        raise PipelineError(f"{source}: column '{target}' row {schema._row(no_label)} has no "
                            "label; set data.missing_label to drop to drop such rows")
    columns, kinds, keep, cell = {}, {}, ~no_label, schema.in_file(source)
    for name in features:
        kinds[name], columns[name] = schema.typed_column(table[name], name, cell,
                                                         True if name in categorical else None)
        absent = _null(columns[name])
        if absent.all():
            raise PipelineError(f"{source}: column '{name}' has no values (every cell is "
                                "empty, NA or NaN)")
        if missing == "error" and (absent & keep).any():
            raise PipelineError(f"{source}: column '{name}' row {schema._row(absent & keep)} is "
                                f"missing (empty, NA or nan); {MISSING_HINT}")
    incomplete = np.zeros(len(keep), bool)
    for values in columns.values():
        incomplete |= _null(values)
    if missing == "drop":
        keep &= ~incomplete
    return _kept(table.num_rows, keep, columns, kinds, target, classes, codes, incomplete,
                 missing, source)


def _kept(rows: int, keep: np.ndarray, columns: dict, kinds: dict, target: str,
          classes: tuple[str, ...], codes: np.ndarray, incomplete: np.ndarray, missing: str,
          source: str) -> Typed:
    """The kept rows as a table and its schema (levels, classes and counts of what is kept)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    notes, no_label = [], codes < 0
    if no_label.any():
        notes.append(f"data.missing_label=drop dropped {int(no_label.sum())} rows with no label")
    if missing == "drop" and (incomplete & ~no_label).any():
        notes.append(f"data.missing=drop dropped {int((incomplete & ~no_label).sum())} rows "
                     "with a missing feature")
    if not keep.any():
        raise PipelineError(f"{source}: no row left ({'; '.join(notes)})")
    codes = codes if keep.all() else codes[keep]
    counts = np.bincount(codes, minlength=len(classes))  # every class had a labelled row
    if not counts.all():  # only data.missing=drop can empty a class
        raise PipelineError(f"{source}: class '{short(classes[int(np.argmin(counts))])}' has "
                            f"no row left ({'; '.join(notes)})")
    table = pa.table(columns)
    table = table if keep.all() else table.filter(pa.array(keep))
    described = []
    for name, kind in kinds.items():
        levels = tuple(sorted(pc.unique(table[name]).drop_null().to_pylist())) \
            if kind == schema.CATEGORICAL else ()
        if len(levels) > schema.MAX_LEVELS:
            raise PipelineError(f"{source}: categorical column '{name}' has {len(levels)} "
                                f"categories, more than the {schema.MAX_LEVELS} allowed")
        described.append(schema.Column(name, kind, levels, table[name].null_count))
    if len(classes) < 2:
        raise PipelineError(f"{source}: column '{target}' has {len(classes)} class "
                            f"({short(', '.join(classes))}); at least 2 are needed")
    table = table.append_column(target, pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(classes, pa.string())))
    return Typed(table, Schema(tuple(described), target, classes, tuple(counts.tolist()),
                               {"read": rows, "kept": int(keep.sum()),
                                "dropped_missing_label": int(no_label.sum()),
                                "dropped_missing_feature": int((~keep & ~no_label).sum())}),
                 tuple(notes))


def _label_codes(labels: Any) -> tuple[tuple[str, ...], np.ndarray]:
    """The sorted classes of a dictionary-coded column (as parsed) and each row's int32 code
    into them, -1 where the row has no label (a missing or whitespace-only cell:
    :func:`schema.text_cells`, on the few distinct labels instead of every row). The codes are
    what the Parquet table stores: fast to read and to stratify."""
    import pyarrow as pa
    import pyarrow.compute as pc

    labels = labels.unify_dictionaries()  # each parsed block has its own
    seen = schema.text_cells(labels.chunk(0).dictionary).to_pylist()  # blank -> None
    classes = sorted(word for word in seen if word is not None)
    rank = {word: code for code, word in enumerate(classes)}
    lookup = np.array([rank.get(word, -1) for word in seen] + [-1], np.int32)  # + a null's
    indices = pa.chunked_array([chunk.indices for chunk in labels.chunks], pa.int32())
    return tuple(classes), lookup[pc.fill_null(indices, len(seen)).to_numpy()]


def read_columns(raw: bytes, source: str, numeric: Sequence[str], categorical: Sequence[str],
                 cell: schema.Cell | None = None) -> Any:
    """Rows for a trained model (predict): the named columns of CSV bytes typed as its schema
    says, by the same parser and rules as fetch (an Arrow table, missing cells null)."""
    import pyarrow as pa

    header = parse_header(raw, source)
    absent = [name for name in (*numeric, *categorical) if name not in header]
    if absent:
        raise PipelineError(f"{source}: missing feature column(s) {', '.join(absent)}")
    names = [*numeric, *categorical]
    table = _parse(raw, header, names, categorical, source)
    if table.num_rows == 0:
        raise PipelineError(f"{source}: has a header but no data rows")
    cell = cell or schema.in_file(source)
    return pa.table({name: schema.typed_column(table[name], name, cell, name in categorical)[1]
                     for name in names})
