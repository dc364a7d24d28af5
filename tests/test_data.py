"""nnpipe.data: the lesson's spiral, random data, CSV/URL loading and schema checks."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from nnpipe import data, schema
from nnpipe.core.errors import PipelineError

SRC = "in.csv"
FEATURES = ["X1", "X2"]
TARGET = "color"

# Rows of the lesson's published spiral.csv (seed 1234, 500 per class, classes c1, c3, c2).
SPIRAL_REFERENCE = {
    1: (-0.0004572182569639057, 0.0019511534008938552, "c1"),
    2: (0.001194299573274617, 0.0038259431572566713, "c1"),
    499: (-0.6114219405298725, -0.7913047520637577, "c1"),
    500: (-0.0, -0.0, "c3"),
    501: (-0.001718783474492818, -0.0010304520833746547, "c3"),
    502: (-0.0029970581583489576, -0.0026611717172623467, "c3"),
}


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


# --- spiral -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lesson_spiral():
    return data.make_spiral(500, ("c1", "c3", "c2"), 0.2, 1234)


@pytest.mark.parametrize("row", sorted(SPIRAL_REFERENCE))
def test_spiral_matches_lesson_csv(lesson_spiral, row):
    X, labels = lesson_spiral
    x1, x2, label = SPIRAL_REFERENCE[row]
    assert abs(X[row, 0] - x1) <= 1e-15
    assert abs(X[row, 1] - x2) <= 1e-15
    assert labels[row] == label


def test_spiral_shapes_and_class_order(lesson_spiral):
    X, labels = lesson_spiral
    assert X.shape == (1500, 2) and X.dtype == np.float64
    assert labels.shape == (1500,)
    assert all(isinstance(v, str) for v in labels[:3])
    assert list(labels[:500]) == ["c1"] * 500
    assert list(labels[500:1000]) == ["c3"] * 500
    assert list(labels[1000:]) == ["c2"] * 500
    names, counts = np.unique(labels, return_counts=True)
    assert dict(zip(names, counts)) == {"c1": 500, "c2": 500, "c3": 500}


def test_spiral_radius_is_linspace_per_arm():
    X, _ = data.make_spiral(50, ("a", "b"), 0.3, 7)
    np.testing.assert_allclose(np.hypot(X[:, 0], X[:, 1]), np.tile(np.linspace(0, 1, 50), 2),
                               atol=1e-12)


def test_spiral_without_noise_follows_the_arm_angle():
    X, _ = data.make_spiral(5, ("a", "b"), 0.0, 0)
    t = np.linspace(4.0, 8.0, 5)
    r = np.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(X[5:], np.c_[r * np.sin(t), r * np.cos(t)], atol=1e-15)


def test_spiral_is_deterministic_per_seed():
    a = data.make_spiral(40, ("x", "y", "z"), 0.2, 3)
    b = data.make_spiral(40, ("x", "y", "z"), 0.2, 3)
    c = data.make_spiral(40, ("x", "y", "z"), 0.2, 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_spiral_frame_columns():
    frame = data.spiral_frame(10, ("c1", "c3", "c2"), 0.2, 1234)
    assert list(frame.columns) == ["X1", "X2", "color"]
    assert len(frame) == 30
    X, labels = data.make_spiral(10, ("c1", "c3", "c2"), 0.2, 1234)
    np.testing.assert_array_equal(frame[["X1", "X2"]].to_numpy(), X)
    assert frame["color"].tolist() == labels.tolist()


# --- random data ------------------------------------------------------------------------------

# --- read_typed: what is refused ---------------------------------------------------------------

def typed(content: bytes, features=FEATURES, target=TARGET, **policies) -> data.Typed:
    return data.read_typed(content, SRC, features, target, **policies)


FIELDS = "the header has 3"
REFUSED = [  # (id, CSV bytes, read_typed keywords, the whole message after "in.csv: ")
    ("empty", b"", {}, "empty file, expected a CSV with a header row"),
    ("blank_lines", b"\n\n", {}, "empty file, expected a CSV with a header row"),
    ("empty_names", b",,\n1,2,3\n", {}, "empty file, expected a CSV with a header row"),
    ("bom_only", b"\xef\xbb\xbf", {}, "empty file, expected a CSV with a header row"),
    ("header_only", b"X1,X2,color\n", {}, "has a header but no data rows"),
    ("no_header", b"0.1,0.2,c1\n0.3,0.4,c2\n", {}, "column 'X1' not found (columns: 0.1, 0.2, "
     "c1); the first row looks like data: the file needs a header row"),
    ("absent_feature", b"a,b,color\n1,2,x\n", {}, "column 'X1' not found (columns: a, b, color)"),
    ("absent_target", b"X1,X2,c\n1,2,x\n", {}, "column 'color' not found (columns: X1, X2, c)"),
    ("target_is_feature", b"X1,X2,color\n1,2,a\n", {"features": ["X1", "color"]},
     "data.target 'color' is also listed in data.features"),
    ("duplicate_name", b"X1,X1,color\n1,2,a\n", {}, "duplicate column name 'X1'"),
    ("nul_bytes", b"X1,X2,color\n1,2,a\x00b\n", {}, "not a text CSV file (contains NUL bytes)"),
    ("invalid_utf8_header", b"X1,X\xe9,color\n1,2,a\n", {}, "not a UTF-8 text CSV file"),
    ("unterminated_quote", b'X1,X2,color\n1,2,"c1\n', {},
     "not a readable CSV (line 2: unexpected end of data)"),
    ("extra_in_every_row", b"X1,X2,color\n1,2,3,c1\n4,5,6,c2\n", {}, f"line 2 has 4 fields, {FIELDS}"),
    ("extra_later", b"X1,X2,color\n1,2,c1\n3,4,c2\n5,6,7,c1\n", {}, f"line 4 has 4 fields, {FIELDS}"),
    ("missing_field", b"X1,X2,color\n1,2,c1\n3,4\n", {}, f"line 3 has 2 fields, {FIELDS}"),
    ("one_field", b"X1,X2,color\n1,2,c1\n3\n", {}, f"line 3 has 1 field, {FIELDS}"),
    ("trailing_comma", b"X1,X2,color\n1,2,c1\n1,2,c1,\n", {}, f"line 3 has 4 fields, {FIELDS}"),
    ("crlf_blank_line", b"X1,X2,color\r\n1,2,c1\r\n\r\n3,4\r\n", {}, f"line 4 has 2 fields, {FIELDS}"),
    ("lone_cr", b"X1,X2,color\r1,2,c1\r3,4\r", {}, f"line 3 has 2 fields, {FIELDS}"),
    ("quoted_newline", b'X1,X2,color\n1,2,"c\n1"\n3,4,c2,"x"\n', {}, f"line 4 has 4 fields, {FIELDS}"),
    ("quoted_missing", b'X1,X2,color\n1,2,"c1"\n\n"3",4\n', {}, f"line 4 has 2 fields, {FIELDS}"),
    ("text_in_numbers", b"X1,X2,color\n1,2,a\n3,oops,b\n", {}, "column 'X2' row 3 has value "
     "'oops'; features must be finite numbers, or categories (list 'X2' in data.categorical)"),
    ("inf", b"X1,X2,color\n1,2,a\ninf,2,b\n", {}, "column 'X1' row 3 has value 'inf'; "
     "features must be finite numbers"),
    ("overflow", b"X1,X2,color\n1,2,a\n1e400,2,b\n", {}, "column 'X1' row 3 has value 'inf'; "
     "features must be finite numbers"),
    ("underscore_digits", b"X1,X2,color\n1,2,a\n1_000,2,b\n", {}, "column 'X1' row 3 has value "
     "'1_000'; features must be finite numbers, or categories"),
    ("arabic_digits", "X1,X2,color\n1,2,a\n\u0661\u0662,2,b\n".encode(), {}, "column 'X1' row 3 "
     "has value '\u0661\u0662'; features must be finite numbers, or categories"),
    ("missing_cell", b"X1,X2,color\n1,,a\n2,3,b\n", {}, "column 'X2' row 2 is missing (empty, "
     "NA or nan); set data.missing to drop, mean, median or most_frequent to accept missing cells"),
    ("whitespace_cell", b"X1,X2,color\n1,2,a\n  ,3,b\n", {}, "column 'X1' row 3 is missing"),
    ("no_values", b"X1,X2,color\n,1,a\nNA,2,b\n", {"missing": "median"},
     "column 'X1' has no values (every cell is empty, NA or NaN)"),
    ("missing_label", b"X1,X2,color\n1,2,a\n3,4,\n5,6,b\n", {}, "column 'color' row 3 has no "
     "label; set data.missing_label to drop to drop such rows"),
    ("blank_label", b"X1,X2,color\n1,2,a\n3,4, \n5,6,b\n", {}, "column 'color' row 3 has no label"),
    ("one_class", b"X1,X2,color\n1,2,only\n3,4,only\n", {},
     "column 'color' has 1 class (only); at least 2 are needed"),
    ("class_lost_to_drop", b"X1,X2,color\n1,2,a\n3,,b\n", {"missing": "drop"},
     "class 'b' has no row left (data.missing=drop dropped 1 rows with a missing feature)"),
    ("nothing_left", b"X1,X2,color\n1,2,\n3,4,\n", {"missing_label": "drop"},
     "no row left (data.missing_label=drop dropped 2 rows with no label)"),
]


@pytest.mark.parametrize("content, kwargs, message", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_read_typed_refuses_naming_the_file_line_column_or_value(content, kwargs, message):
    with pytest.raises(PipelineError) as caught:
        typed(content, **kwargs)
    assert str(caught.value).startswith(f"{SRC}: {message}"), str(caught.value)


def test_random_binary_is_refused():
    with pytest.raises(PipelineError, match=f"^{re.escape(SRC)}: not a (UTF-8 )?(text|readable) CSV"):
        typed(b"X1,X2,color\n" + os.urandom(200_000).replace(b"\x00", b"") + b"\n")


# --- read_typed: the type rules -----------------------------------------------------------------

def test_numbers_labels_and_the_schema():
    result = typed(b"\xef\xbb\xbfX1,X2,color,extra\n1.5,-2,c1,z\n3,4e-3,c2,z\n 5 ,.5,c1,z\n")
    assert result.table.column_names == ["X1", "X2", "color"]
    assert result.table["X1"].to_pylist() == [1.5, 3.0, 5.0]
    assert result.table["X2"].to_pylist() == [-2.0, 0.004, 0.5]
    s = result.schema
    assert (s.numeric, s.categorical, s.classes, s.class_counts) == (("X1", "X2"), (), ("c1", "c2"),
                                                                      (2, 1))
    assert s.rows == {"read": 3, "kept": 3, "dropped_missing_label": 0, "dropped_missing_feature": 0}


def test_labels_stored_as_codes_into_the_sorted_classes_and_read_back():
    """fetch stores labels as int32 codes into the sorted classes; split reads them back as
    one-byte codes, from that dictionary or from plain text, and refuses a label the schema
    does not list or a missing one."""
    import pyarrow as pa

    result = typed(b"X1,y\n1,b\n2,a\n3,c\n4,b\n", ("X1",), "y")
    labels = result.table["y"]
    assert labels.type == pa.dictionary(pa.int32(), pa.string())
    assert (result.schema.classes, result.schema.class_counts) == (("a", "b", "c"), (1, 2, 1))
    for stored in (labels, pa.chunked_array([labels.to_pylist()[:2], labels.to_pylist()[2:]])):
        codes = schema.class_codes(stored, ("a", "b", "c"), "t.parquet")
        assert codes.dtype == np.uint8 and codes.tolist() == [1, 0, 2, 1]
    for bad, message in ((["a", "z"], "a label the schema does not list"),
                         (["a", None], "a row with no label")):
        with pytest.raises(PipelineError, match=f"^t.parquet: {message}; re-run fetch$"):
            schema.class_codes(pa.array(bad), ("a", "b"), "t.parquet")


def test_text_stays_the_text_the_file_has():
    """true/false are categories as written; 01, 1, 1.0 and 10 are four labels; a declared
    column of numbers keeps its text; a whitespace-only cell is missing."""
    content = (b"flag,year,n,label\ntrue,2007,1,01\nfalse,07,2,1\nTrue,2007,3,1.0\n"
               b"  ,2008,4,10\n")
    result = typed(content, ["flag", "year", "n"], "label", categorical=["year"], missing="median")
    t, s = result.table, result.schema
    assert t["flag"].to_pylist() == ["true", "false", "True", None]
    assert t["year"].to_pylist() == ["2007", "07", "2007", "2008"]
    assert t["n"].to_pylist() == [1.0, 2.0, 3.0, 4.0]
    assert s.classes == ("01", "1", "1.0", "10")
    assert [(c.name, c.type, c.levels, c.missing) for c in s.features] == [
        ("flag", "categorical", ("True", "false", "true"), 1),
        ("year", "categorical", ("07", "2007", "2008"), 0), ("n", "numeric", (), 0)]


@pytest.mark.parametrize("token", [*schema.MISSING_CELLS, " ", "\t", "  "])
def test_every_missing_token_is_missing_in_numbers_text_and_labels(token):
    quoted = '"' + token + '"'
    content = f"X1,X2,color\n{quoted},a,c1\n1,{quoted},c2\n2,b,{quoted}\n3,c,c1\n".encode()
    result = typed(content, missing="median", missing_label="drop")
    assert result.table["X1"].to_pylist() == [None, 1.0, 3.0]
    assert result.table["X2"].to_pylist() == ["a", None, "c"]
    assert result.schema.rows["dropped_missing_label"] == 1


@pytest.mark.parametrize("missing, missing_label, kept, notes", [
    ("drop", "drop", [1.0, 7.0], ["data.missing_label=drop dropped 1 rows with no label",
                             "data.missing=drop dropped 1 rows with a missing feature"]),
    ("median", "drop", [1.0, None, 7.0], ["data.missing_label=drop dropped 1 rows with no label"]),
])
def test_row_policies_drop_and_say_how_many(missing, missing_label, kept, notes):
    content = b"X1,X2,color\n1,2,a\n,3,b\n5,6,\n7,8,b\n"
    result = typed(content, ["X1"], TARGET, missing=missing, missing_label=missing_label)
    assert result.table["X1"].to_pylist()[:len(kept)] == kept
    assert list(result.notes) == notes
    assert result.schema.rows["read"] == 4


NUMBERS = ["1", "01", "+1", "-0", "1.", ".5", "1e5", "1E+05", " 2 ", "-3.25e-2", "1e400", "inf",
           "Infinity", "1_000", "0x10", "1d5", "1,5", "\u0661", "e5", "1e", ".", "+", "--1"]


@pytest.mark.parametrize("text", NUMBERS)
def test_one_number_grammar_whether_arrow_or_the_rules_read_it(text):
    """fetch reads a clean numeric column with Arrow's float parser and anything else by
    schema.NUMBER: both accept exactly the same finite numbers, with the same value."""
    import pyarrow as pa

    quoted = '"' + text + '"'
    fast = schema.arrow_read(f"a,b\n{quoted},x\n".encode(), ["a", "b"], ["a"], [], SRC)["a"]
    rules = re.fullmatch(schema.NUMBER, text) is not None
    if pa.types.is_floating(fast.type) and np.isfinite(fast[0].as_py()):
        assert rules and float(text.strip()) == fast[0].as_py()
    elif rules:
        assert not np.isfinite(float(text.strip()))


def test_a_field_longer_than_the_csv_module_limit():
    import csv

    limit = csv.field_size_limit()
    label = "x" * (limit + 10)
    for quote in ("", '"'):
        content = f"X1,X2,color\n1,2,{quote}{label}{quote}\n3,4,b\n".encode()
        assert typed(content).table["color"].to_pylist()[0] == label
    with _raises(f"{SRC}: line 3 has 2 fields, the header has 3"):
        typed(f'X1,X2,color\n1,2,"{label}"\n3,4\n'.encode())
    assert csv.field_size_limit() == limit


