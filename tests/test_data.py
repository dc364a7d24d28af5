"""nnpipe.data: the lesson's spiral, random data, CSV/URL loading and schema checks."""
from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest

from deps import ROOT
from nnpipe import data
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

# --- parse_csv --------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\n\n", b",,\n1,2,3\n", b"\xef\xbb\xbf"])
def test_parse_csv_empty(content):
    with _raises(f"{SRC}: empty file, expected a CSV with a header row"):
        data.parse_csv(content, SRC)


def test_parse_csv_header_only_then_no_data_rows():
    frame = data.parse_csv(b"X1,X2,color\n", SRC)
    assert list(frame.columns) == ["X1", "X2", "color"] and len(frame) == 0
    with _raises(f"{SRC}: has a header but no data rows"):
        data.validate_frame(frame, FEATURES, TARGET, SRC)


def test_parse_csv_without_header_gives_header_hint():
    frame = data.parse_csv(b"0.1,0.2,c1\n0.3,0.4,c2\n", SRC)
    with _raises(f"{SRC}: column 'X1' not found (columns: 0.1, 0.2, c1); the first row looks "
                 "like data: the file needs a header row"):
        data.validate_frame(frame, FEATURES, TARGET, SRC)


def test_missing_column_without_numeric_header_has_no_hint():
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "color": ["x"]})
    with pytest.raises(PipelineError) as info:
        data.validate_frame(frame, FEATURES, TARGET, SRC)
    assert str(info.value) == f"{SRC}: column 'X1' not found (columns: a, b, color)"


def test_parse_csv_duplicate_column_names():
    with _raises(f"{SRC}: duplicate column name 'X1'"):
        data.parse_csv(b"X1,X1,color\n1,2,a\n", SRC)


def test_parse_csv_strips_utf8_bom():
    frame = data.parse_csv(b"\xef\xbb\xbfX1,X2,color\n1,2,a\n", SRC)
    assert list(frame.columns) == ["X1", "X2", "color"]


def test_parse_csv_random_binary():
    content = os.urandom(200_000) + b"\x00"
    with pytest.raises(PipelineError, match=f"^{re.escape(SRC)}: not a (UTF-8 )?text CSV file"):
        data.parse_csv(content, SRC)


def test_parse_csv_nul_bytes_in_valid_utf8():
    with _raises(f"{SRC}: not a text CSV file (contains NUL bytes)"):
        data.parse_csv(b"X1,X2,color\n1,2,a\x00b\n", SRC)


def test_parse_csv_invalid_utf8():
    with _raises(f"{SRC}: not a UTF-8 text CSV file"):
        data.parse_csv(b"X1,X2,color\n1,2,caf\xe9\n", SRC)


def test_parse_csv_unterminated_quote():
    with _raises(f"{SRC}: not a readable CSV ("):
        data.parse_csv(b'"X1,X2\n1,2\n', SRC)


def test_parse_csv_success():
    frame = data.parse_csv(b"X1,X2,color\n1.5,-2,c1\n3,4e-3,c2\n", SRC)
    assert list(frame.columns) == ["X1", "X2", "color"]
    assert frame["X1"].tolist() == [1.5, 3.0]
    assert frame["X2"].tolist() == [-2.0, 0.004]
    assert frame["color"].tolist() == ["c1", "c2"]


# --- rows with another number of fields than the header ----------------------------------------

@pytest.mark.parametrize("content, line, fields", [
    (b"X1,X2,color\n1,2,3,c1\n4,5,6,c2\n", 2, 4),        # pandas would index by the first
    (b"X1,X2,color\n1,2,c1\n3,4,c2\n5,6,7,c1\n", 4, 4),
    (b"X1,X2,color\n1,2,c1\n3,4\n", 3, 2),               # a field left out
    (b"X1,X2,color\n1,2,c1\n3\n", 3, 1),
    (b"X1,X2,color\n1,2,c1\n1,2,c1,\n", 3, 4),           # one trailing comma too many
    (b"X1,X2,color\r\n1,2,c1\r\n\r\n3,4\r\n", 4, 2),       # CRLF, a blank line counted
    (b'X1,X2,color\n1,2,"c\n1"\n3,4,c2,"x"\n', 4, 4),   # a quoted newline is in its record
    (b'X1,X2,color\n1,2,"c1"\n\n"3",4\n', 4, 2),
], ids=["extra_in_every_row", "extra_in_a_later_row", "missing_field", "one_field",
        "trailing_comma_too_many", "crlf_blank_line", "quoted_newline", "quoted_missing"])
def test_parse_csv_refuses_rows_whose_field_count_is_not_the_headers(content, line, fields):
    with pytest.raises(PipelineError) as caught:
        data.parse_csv(content, SRC)
    plural = "s" if fields != 1 else ""
    assert str(caught.value) == f"{SRC}: line {line} has {fields} field{plural}, the header has 3"


def test_parse_csv_an_empty_field_is_a_missing_value_not_a_malformed_row():
    """``3,4,`` has the header's three fields, the last one empty: a missing value, which
    validate_frame then reports by column and row."""
    frame = data.parse_csv(b"X1,X2,color\n1,2,c1\n3,,c2\n5,6,\n\n   \n", SRC)
    assert frame["X2"].isna().tolist() == [False, True, False]
    assert frame["color"].isna().tolist() == [False, False, True]
    with _raises(f"{SRC}: column 'X2' row 3 is missing (empty, NA or nan); set data.missing "
                 "to drop, mean, median or most_frequent to accept missing cells"):
        data.validate_frame(frame, FEATURES, TARGET, SRC)


def test_parse_csv_field_check_handles_a_field_longer_than_the_csv_module_limit():
    import csv

    limit = csv.field_size_limit()
    label = "x" * (limit + 10)
    for quote in ("", '"'):
        frame = data.parse_csv(f"X1,X2,color\n1,2,{quote}{label}{quote}\n".encode(), SRC)
        assert frame["color"].tolist() == [label]
    with _raises(f"{SRC}: line 3 has 2 fields, the header has 3"):
        data.parse_csv(f'X1,X2,color\n1,2,"{label}"\n3,4\n'.encode(), SRC)
    assert csv.field_size_limit() == limit


def test_fetch_refuses_a_csv_with_an_extra_field_and_writes_nothing(tmp_path, capsys):
    """The stage: today's pandas would shift every column by one and exit 0."""
    import yaml

    from stages import fetch

    source, out = tmp_path / "mine.csv", tmp_path / "raw.csv"
    rows = "".join(f"{i},{i / 10},{-i / 10},c{i % 3}\n" for i in range(30))
    source.write_text("X1,X2,color\n" + rows)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["fetch"]["source"] = str(source)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit) as caught:
        fetch.main(["--params", str(tmp_path / "params.yaml"), "--out", str(out)])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (f"fetch: error: {source}: line 2 has 4 fields, "
                                       "the header has 3\n")
    assert not out.exists()


# --- validate_frame ---------------------------------------------------------------------------

def _frame(**overrides):
    columns = {
        "X1": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        "X2": [1, 2, 3, 4, 5, 6, 7, 8],
        "color": ["b", "a", "b", "a", "b", "a", "b", "a"],
        "extra": ["z"] * 8,
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


def test_validate_frame_success():
    checked = data.validate_frame(_frame(), FEATURES, TARGET, SRC)
    frame = checked.frame
    assert list(frame.columns) == ["X1", "X2", "color"]
    assert frame["X1"].dtype == np.float64 and frame["X2"].dtype == np.float64
    assert frame["X2"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert all(type(v) is str for v in frame["color"])
    assert frame["color"].tolist() == ["b", "a", "b", "a", "b", "a", "b", "a"]
    assert checked.class_counts == {"a": 4, "b": 4}
    assert all(type(v) is int for v in checked.class_counts.values())


def test_validate_frame_integer_labels_become_strings():
    checked = data.validate_frame(_frame(color=[0, 1] * 4), FEATURES, TARGET, SRC)
    assert checked.frame["color"].tolist() == ["0", "1"] * 4
    assert checked.class_counts == {"0": 4, "1": 4}


def test_validate_frame_does_not_mutate_input():
    frame = _frame(X2=["1", "2", "3", "4", "5", "6", "7", "8"])
    before = frame.copy()
    data.validate_frame(frame, FEATURES, TARGET, SRC)
    pd.testing.assert_frame_equal(frame, before)


def test_validate_frame_missing_feature():
    with _raises(f"{SRC}: column 'X3' not found (columns: X1, X2, color, extra)"):
        data.validate_frame(_frame(), ["X1", "X3"], TARGET, SRC)


def test_validate_frame_missing_target():
    with _raises(f"{SRC}: column 'label' not found (columns: X1, X2, color, extra)"):
        data.validate_frame(_frame(), FEATURES, "label", SRC)


def test_validate_frame_target_listed_as_feature():
    with _raises(f"{SRC}: data.target 'color' is also listed in data.features"):
        data.validate_frame(_frame(), ["X1", "color"], TARGET, SRC)


@pytest.mark.parametrize("value, shown", [(np.inf, "inf"), (-np.inf, "-inf")])
def test_validate_frame_bad_feature_value(value, shown):
    values = [0.1, 0.2, value, 0.4, 0.5, 0.6, 0.7, 0.8]
    pattern = (re.escape(f"{SRC}: column 'X1' row 4 has value ") + r"(np\.float64\()?"
               + re.escape(shown) + r"\)?" + re.escape("; features must be finite numbers"))
    with pytest.raises(PipelineError, match=pattern):
        data.validate_frame(_frame(X1=values), FEATURES, TARGET, SRC)


def test_validate_frame_bad_value_shown_as_plain_number():
    values = [0.1, 0.2, np.inf, 0.4, 0.5, 0.6, 0.7, 0.8]
    with _raises(f"{SRC}: column 'X1' row 4 has value inf; features must be finite numbers"):
        data.validate_frame(_frame(X1=values), FEATURES, TARGET, SRC)


def test_validate_frame_non_numeric_from_csv_names_row_and_the_way_out():
    frame = data.parse_csv(b"X1,X2,color\n1,2,a\n3,oops,b\n", SRC)
    with _raises(f"{SRC}: column 'X2' row 3 has value 'oops'; features must be finite numbers, "
                 "or categories (list 'X2' in data.categorical)"):
        data.validate_frame(frame, FEATURES, TARGET, SRC)


@pytest.mark.parametrize("value", [np.nan, None, "NA"])
@pytest.mark.parametrize("missing", ["error", "drop", "median"])
def test_validate_frame_a_missing_cell_is_refused_only_by_error(value, missing):
    values = [0.1, 0.2, value, 0.4, 0.5, 0.6, 0.7, 0.8]
    frame = data.parse_csv(_frame(X1=values).to_csv(index=False).encode(), SRC)
    if missing == "error":
        with _raises(f"{SRC}: column 'X1' row 4 is missing (empty, NA or nan); set data.missing "
                     "to drop"):
            data.validate_frame(frame, FEATURES, TARGET, SRC, missing=missing)
        return
    checked = data.validate_frame(frame, FEATURES, TARGET, SRC, missing=missing)
    assert np.isnan(checked.frame["X1"].iloc[2]) and checked.frame["X1"].dtype == np.float64
    assert checked.frame["X1"].drop(2).tolist() == [0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_validate_frame_empty_cell_and_inf_from_csv():
    frame = data.parse_csv(b"X1,X2,color\n1,,a\n2,3,b\n", SRC)
    with _raises(f"{SRC}: column 'X2' row 2 is missing"):
        data.validate_frame(frame, FEATURES, TARGET, SRC)
    frame = data.parse_csv(b"X1,X2,color\n1,2,a\ninf,2,b\n", SRC)
    with pytest.raises(PipelineError,
                       match=re.escape(f"{SRC}: column 'X1' row 3 has value ") + r".*inf"):
        data.validate_frame(frame, FEATURES, TARGET, SRC)


def test_validate_frame_label_nan():
    labels = ["b", "a", "b", None, "b", "a", "b", "a"]
    with _raises(f"{SRC}: column 'color' row 5 has no label"):
        data.validate_frame(_frame(color=labels), FEATURES, TARGET, SRC)


def test_validate_frame_single_class():
    with _raises(f"{SRC}: column 'color' has 1 class (only); at least 2 are needed"):
        data.validate_frame(_frame(color=["only"] * 8), FEATURES, TARGET, SRC)

