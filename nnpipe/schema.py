"""The type rules: how fetch decides each column's type once, and how every later reader,
predict included, reads a value by the type fetch decided. The schema carries them.

Written rules, applied in this order to each feature column of the source CSV:

1. A cell is **missing** if it is empty, whitespace only, or one of :data:`MISSING_CELLS`
   (pandas' and Arrow's NA words: ``NA``, ``NaN``, ``null``, ``None``, ...).
2. A column listed in ``data.categorical`` is **categorical**: its cells are the text the file
   has (``01`` is not ``1``, ``2007`` stays ``"2007"``).
3. Otherwise a column whose every non-missing cell is a number is **numeric** (float64). A
   number is ASCII decimal notation, optionally signed, with an optional exponent and spaces
   around it (:data:`NUMBER`: ``1``, ``-0.5``, ``.5``, ``1e-3``); not ``1_000``, not
   ``0x10``, not other scripts' digits, and it must be finite (``inf``, ``1e400`` are refused).
4. A column whose every non-missing cell is not a number is **categorical**, its cells kept as
   the file has them (``true``/``false`` are the categories "true" and "false").
5. A column mixing numbers and text is refused naming its first text cell.

The target column is always text, as the file has it (labels ``01``, ``1`` and ``1.0`` are
three classes); a missing label is refused or its row dropped (``data.missing_label``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nnpipe.core.errors import PipelineError, short

NUMERIC, CATEGORICAL = "numeric", "categorical"
MISSING_CELLS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                 "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
NUMBER = r"^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"
MAX_LEVELS = 1000  # categories of one categorical column (each is an input of the model)
_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to double")


def arrow_read(raw: bytes, header: Sequence[str], columns: Sequence[str], text: Sequence[str],
               source: str, coded: Sequence[str] = ()) -> Any:
    """The ``columns`` of CSV bytes as an Arrow table, missing cells null: those in ``text``
    as strings (in ``coded`` too: dictionary-coded, for a label's few distinct values), the
    others float64 where Arrow's parser takes every cell (one parse), else strings for
    :func:`typed_column` to judge. ``header``: the file's column names."""
    from pyarrow import csv

    from nnpipe.core.tables import arrow

    pa = arrow()
    types = {name: pa.dictionary(pa.int32(), pa.string()) if name in coded else
             pa.string() if name in text else pa.float64() for name in columns}
    block = 1 << 24  # bytes Arrow parses at once; a row must fit in one
    while True:
        options = csv.ConvertOptions(column_types=types, include_columns=list(columns),
                                     null_values=list(MISSING_CELLS), strings_can_be_null=True,
                                     quoted_strings_can_be_null=True)
        try:
            return csv.read_csv(pa.py_buffer(raw), csv.ReadOptions(block_size=block),
                                csv.ParseOptions(newlines_in_values=raw.find(b'"') >= 0), options)
        except pa.ArrowInvalid as exc:
            found = _CONVERSION.match(str(exc))
            if "straddling" in str(exc) and block <= len(raw):
                block = len(raw) + 1  # a row longer than a block: the file as one block
                continue
            if not found or types.get(header[int(found[1])]) == pa.string():
                first = str(exc).strip().splitlines()[0]
                raise PipelineError(f"{source}: not a readable CSV ({short(first)})") from None
            types[header[int(found[1])]] = pa.string()  # text in it: re-read it as text


def text_cells(values: Any) -> Any:
    """A string column with whitespace-only cells made missing (null); other text as is."""
    import pyarrow.compute as pc

    blank = pc.equal(pc.utf8_trim_whitespace(values), "")
    return pc.if_else(pc.fill_null(blank, False), None, values)


def _row(mask: np.ndarray) -> int:
    """The CSV line (header = line 1) of the first True of a boolean mask (row i is line i+2)."""
    return int(np.flatnonzero(mask)[0]) + 2


def _numbers(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(is a number, float64 value or NaN) of each cell of a string column (nulls: False)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    is_number = pc.fill_null(pc.match_substring_regex(values, NUMBER), False)
    mask = is_number.to_numpy(zero_copy_only=False)
    out = np.full(len(values), np.nan)
    if mask.any():
        picked = pc.utf8_trim_whitespace(pc.filter(values, is_number))
        out[mask] = pc.cast(picked, pa.float64()).to_numpy(zero_copy_only=False)
    return mask, out


Cell = Callable[[str, int], str]  # (column, CSV line) -> the cell, as an error names it


def in_file(source: str) -> Cell:
    return lambda name, line: f"{source}: column '{name}' row {line}"


def typed_column(values: Any, name: str, cell: Cell, categorical: bool | None) -> Any:
    """One column by the rules above: ``(kind, array)``, a float64 or string Arrow array with
    missing cells null. ``categorical``: True (declared, or the schema says so), False (the
    schema says numeric: text is refused), None (fetch: decide by rules 3 to 5). ``cell``
    names a cell in an error."""
    import pyarrow as pa

    values = values.combine_chunks() if hasattr(values, "combine_chunks") else values
    if categorical:
        return CATEGORICAL, text_cells(values.cast(pa.string()))
    if pa.types.is_floating(values.type):
        numbers = values.to_numpy(zero_copy_only=False)
        absent = values.is_null().to_numpy(zero_copy_only=False)
        _check_finite(numbers, absent, values, name, cell)
        return NUMERIC, values
    values = text_cells(values)
    absent = values.is_null().to_numpy(zero_copy_only=False)
    is_number, numbers = _numbers(values)
    text = ~is_number & ~absent
    if categorical is None and not (is_number & ~absent).any():
        return CATEGORICAL, values
    if text.any():
        row = _row(text)
        hint = f", or categories (list '{name}' in data.categorical)" if categorical is None \
            else ""
        raise PipelineError(f"{cell(name, row)} has value {short(repr(values[row - 2].as_py()))}"
                            f"; features must be finite numbers{hint}")
    _check_finite(numbers, absent, values, name, cell)
    return NUMERIC, pa.array(numbers, mask=absent)


def _check_finite(numbers: np.ndarray, absent: np.ndarray, values: Any, name: str,
                  cell: Cell) -> None:
    bad = ~np.isfinite(numbers) & ~absent
    if bad.any():
        row = _row(bad)
        raise PipelineError(f"{cell(name, row)} has value {short(repr(str(values[row - 2].as_py())))}"
                            "; features must be finite numbers")


def class_codes(labels: Any, classes: Sequence[str], source: str) -> np.ndarray:
    """``(N,)`` indices (the smallest unsigned type) of Arrow string ``labels`` into the sorted ``classes``
    (the schema's): stratifying on them gives the indices stratifying on the names would
    (both sort alike), at a fraction of the cost."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if labels.null_count:
        raise PipelineError(f"{source}: a row with no label; re-run fetch")
    value_set, absent = pa.array(list(classes), pa.string()), len(classes)
    dtype = np.min_scalar_type(absent)  # a sort on one-byte codes is a radix sort

    def codes_of(values: Any) -> np.ndarray:
        found = pc.fill_null(pc.index_in(values, value_set=value_set), absent)
        return found.to_numpy(zero_copy_only=False).astype(dtype)

    parts = [codes_of(chunk.dictionary)[chunk.indices.to_numpy(zero_copy_only=False)]
             if pa.types.is_dictionary(chunk.type) else codes_of(chunk)  # fetch's: map the
             for chunk in getattr(labels, "chunks", [labels])]         # dictionary only
    codes = np.concatenate(parts) if parts else np.zeros(0, dtype)
    if (codes == absent).any():
        raise PipelineError(f"{source}: a label the schema does not list; re-run fetch")
    return codes


@dataclass(frozen=True)
class Column:
    """A feature column: its name, type (numeric | categorical) and, if categorical, its
    levels (sorted); ``missing``: how many of the kept rows have it missing."""
    name: str
    type: str
    levels: tuple[str, ...] = ()
    missing: int = 0


@dataclass(frozen=True)
class Schema:
    """What fetch decided: the feature columns in data.features order, the target and its
    classes (sorted) with their counts, and the rows read, kept and dropped by each policy."""
    features: tuple[Column, ...]
    target: str
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    rows: Mapping[str, int]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.features)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.features if c.type == CATEGORICAL)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.features if c.type == NUMERIC)

    def to_dict(self) -> dict[str, Any]:
        return {"features": [{"name": c.name, "type": c.type, "missing": c.missing,
                              **({"levels": list(c.levels)} if c.type == CATEGORICAL else {})}
                             for c in self.features],
                "target": {"name": self.target, "classes": list(self.classes),
                           "counts": list(self.class_counts)},
                "rows": dict(self.rows)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "schema") -> "Schema":
        try:
            features = tuple(Column(str(c["name"]), c["type"],
                                    tuple(str(v) for v in c.get("levels", ())), int(c["missing"]))
                             for c in state["features"])
            target = state["target"]
            schema = cls(features, str(target["name"]), tuple(str(c) for c in target["classes"]),
                         tuple(int(n) for n in target["counts"]),
                         {str(k): int(v) for k, v in state["rows"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PipelineError(f"{source}: malformed schema ({short(repr(exc))}); re-run "
                                "fetch") from None
        if not schema.features or any(c.type not in (NUMERIC, CATEGORICAL)
                                      for c in schema.features) \
                or len(schema.classes) != len(schema.class_counts) or len(schema.classes) < 2:
            raise PipelineError(f"{source}: malformed schema (types, classes); re-run fetch")
        return schema


def load(path: str) -> Schema:
    from nnpipe.core import files

    return Schema.from_dict(files.read_json(path), source=path)


def save(path: str, schema: Schema) -> None:
    from nnpipe.core import files

    files.write_json(path, schema.to_dict())
