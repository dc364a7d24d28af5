"""nnpipe.core.files: atomic, deterministic, pickle-free reading and writing."""
from __future__ import annotations

import errno
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnpipe.core import files
from nnpipe.core.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]


def _listing(directory) -> list[str]:
    return sorted(os.listdir(directory))


# --- atomic writes ----------------------------------------------------------------------------

def test_write_bytes_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.bin"
    files.write_bytes(str(path), b"abc")
    assert path.read_bytes() == b"abc"
    assert _listing(tmp_path) == ["out.bin"]


def test_write_creates_missing_directories(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    files.write_text(str(path), "héllo\n")
    assert path.read_bytes() == "héllo\n".encode("utf-8")
    assert _listing(path.parent) == ["out.txt"]


def test_overwrite_replaces_content(tmp_path):
    path = tmp_path / "out.txt"
    files.write_text(str(path), "old")
    files.write_text(str(path), "new")
    assert path.read_text() == "new"
    assert _listing(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failing_writer_keeps_previous_content_and_no_temp(tmp_path, error):
    path = tmp_path / "out.txt"
    path.write_text("previous")

    def writer(handle):
        handle.write(b"half a fi")
        raise error("boom")

    with pytest.raises(error, match="boom"):
        files.atomic_write(str(path), writer)
    assert path.read_text() == "previous"
    assert _listing(tmp_path) == ["out.txt"]


def test_failing_writer_with_no_previous_file_leaves_nothing(tmp_path):
    def writer(handle):
        raise ValueError("nope")

    with pytest.raises(ValueError):
        files.atomic_write(str(tmp_path / "new.bin"), writer)
    assert _listing(tmp_path) == []


def test_atomic_path_temp_is_in_target_directory(tmp_path):
    target = tmp_path / "x.json"
    with files.atomic_path(str(target)) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert os.path.basename(tmp).startswith(".x.json.")
        with open(tmp, "w") as handle:
            handle.write("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert not os.path.exists(tmp)


# --- JSON -------------------------------------------------------------------------------------

def test_write_json_sorted_keys_and_plain_values(tmp_path):
    path = tmp_path / "m.json"
    data = {"b": np.float64(0.25), "a": {"z": np.int64(3), "c": np.float32(0.5)},
            "arr": np.array([1.5, 2.0]), "t": (1, np.int32(2)), "flag": np.bool_(True)}
    files.write_json(str(path), data)
    text = path.read_text()
    assert text == json.dumps({"a": {"c": 0.5, "z": 3}, "arr": [1.5, 2.0], "b": 0.25,
                               "flag": True, "t": [1, 2]}, indent=2, sort_keys=True) + "\n"
    loaded = json.loads(text)
    assert type(loaded["a"]["z"]) is int and type(loaded["b"]) is float
    assert "np." not in text and "float64" not in text


def test_write_json_float_round_trip_is_exact(tmp_path):
    path = tmp_path / "m.json"
    value = 0.1 + 0.2
    files.write_json(str(path), {"x": np.float64(value)})
    assert files.read_json(str(path)) == {"x": value}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"),
                                 np.float64("nan"), np.array([1.0, np.inf]), [1.0, float("nan")]])
def test_write_json_refuses_non_finite(tmp_path, bad):
    path = tmp_path / "m.json"
    path.write_text('{"kept": 1}')
    with pytest.raises(ValueError):
        files.write_json(str(path), {"loss": bad})
    assert path.read_text() == '{"kept": 1}'
    assert _listing(tmp_path) == ["m.json"]


def test_dumps_json_names_the_non_finite_value():
    with pytest.raises(ValueError, match="refusing to write non-finite number nan"):
        files.dumps_json({"loss": float("nan")})


def test_read_json_errors(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(PipelineError, match=f"{missing}: file not found"):
        files.read_json(str(missing))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(PipelineError, match=f"{broken}: not valid JSON"):
        files.read_json(str(broken))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PipelineError, match=f"{binary}: not valid JSON"):
        files.read_json(str(binary))


# --- npz --------------------------------------------------------------------------------------

@pytest.fixture
def arrays():
    rng = np.random.RandomState(0)
    return {"X": rng.randn(5, 3), "y": np.array([0, 2, 1, 1, 0], dtype=np.int64),
            "mask": np.array([True, False]), "names": np.array(["c1", "c3"]),
            "f32": np.arange(6, dtype=np.float32).reshape(3, 2)[:, ::-1]}  # non-contiguous


def test_npz_round_trip(tmp_path, arrays):
    path = tmp_path / "a.npz"
    files.write_npz(str(path), arrays)
    loaded = files.read_npz(str(path), ("X", "y"))
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype, name
        np.testing.assert_array_equal(loaded[name], array)
    assert _listing(tmp_path) == ["a.npz"]


def npz_bytes(arrays) -> bytes:
    """What files.write_npz writes for ``arrays``."""
    with tempfile.TemporaryDirectory() as tmp:
        files.write_npz(os.path.join(tmp, "a.npz"), arrays)
        return Path(tmp, "a.npz").read_bytes()


def test_npz_bytes_loadable_by_numpy(tmp_path, arrays):
    path = tmp_path / "a.npz"
    path.write_bytes(npz_bytes(arrays))
    with np.load(path, allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["X"], arrays["X"])


def test_npz_bytes_same_arrays_same_bytes(arrays):
    first = npz_bytes(arrays)
    copies = {name: array.copy() for name, array in reversed(list(arrays.items()))}
    assert npz_bytes(copies) == first


def test_npz_bytes_do_not_depend_on_the_clock(monkeypatch, arrays):
    import io as stdio

    def at(seconds):
        monkeypatch.setattr(time, "time", lambda: seconds)
        control = stdio.BytesIO()
        with zipfile.ZipFile(control, "w") as archive:
            archive.writestr("entry", b"x")  # zipfile stamps the (patched) current time
        return npz_bytes(arrays), control.getvalue()

    ours_a, control_a = at(1_000_000_000.0)
    ours_b, control_b = at(1_700_000_000.0)
    assert control_a != control_b  # the patched clock does reach zipfile
    assert ours_a == ours_b


def test_npz_entries_have_fixed_timestamp(arrays):
    import io as stdio
    with zipfile.ZipFile(stdio.BytesIO(npz_bytes(arrays))) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(f"{name}.npy" for name in arrays)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_npz_bytes_refuses_object_arrays():
    with pytest.raises(ValueError, match="'bad' has dtype object"):
        npz_bytes({"bad": np.array([{"a": 1}, None], dtype=object)})


def test_read_npz_refuses_pickled_object_array(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.zeros(2), bad=np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(PipelineError, match=f"{path}: holds pickled objects"):
        files.read_npz(str(path))


def test_read_npz_missing_file(tmp_path):
    path = tmp_path / "none.npz"
    with pytest.raises(PipelineError, match=f"{path}: file not found"):
        files.read_npz(str(path))


def test_read_npz_missing_keys_are_named(tmp_path):
    path = tmp_path / "a.npz"
    files.write_npz(str(path), {"X": np.zeros((2, 2))})
    with pytest.raises(PipelineError, match=f"{path}: missing array\\(s\\) y, w"):
        files.read_npz(str(path), ("X", "y", "w"))


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(4096),
                                     b"hello, this is text\n", b"PK\x03\x04truncated zip", b""],
                         ids=["random", "text", "truncated_zip", "empty"])
def test_read_npz_garbage_bytes(tmp_path, content):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(PipelineError, match=f"^{path}: "):
        files.read_npz(str(path))


def test_read_npz_garbage_bytes_not_reported_as_pickle(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"hello, this is text, not an archive\n")
    with pytest.raises(PipelineError, match=f"{path}: not a valid .npz archive"):
        files.read_npz(str(path))


def test_read_npz_on_a_npy_file_is_a_pipeline_error(tmp_path):
    path = tmp_path / "plain.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.arange(3))
    with pytest.raises(PipelineError, match=f"{path}: not a valid .npz archive"):
        files.read_npz(str(path))


# --- read_xy ----------------------------------------------------------------------------------

def test_read_xy_returns_float64_and_int64(tmp_path):
    path = tmp_path / "train.npz"
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.array([0, 1, 1], dtype=np.int32)
    files.write_npz(str(path), {"X": X, "y": y})
    X2, y2 = files.read_xy(str(path))
    assert X2.dtype == np.float64 and y2.dtype == np.int64
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("X, y, shown", [
    (np.zeros(3), np.zeros(3, dtype=np.int64), r"\(3,\) and \(3,\) int64"),
    (np.zeros((3, 2)), np.zeros(4, dtype=np.int64), r"\(3, 2\) and \(4,\) int64"),
    (np.zeros((3, 2)), np.zeros(3), r"\(3, 2\) and \(3,\) float64"),
    (np.zeros((3, 2)), np.zeros((3, 1), dtype=np.int64), r"\(3, 2\) and \(3, 1\) int64"),
])
def test_read_xy_shape_checks(tmp_path, X, y, shown):
    path = tmp_path / "bad.npz"
    files.write_npz(str(path), {"X": X, "y": y})
    with pytest.raises(PipelineError, match=f"{path}: expected X \\(N, D\\) and integer y "
                                            f"\\(N,\\), got {shown}"):
        files.read_xy(str(path))


def test_read_xy_missing_y(tmp_path):
    path = tmp_path / "bad.npz"
    files.write_npz(str(path), {"X": np.zeros((2, 2))})
    with pytest.raises(PipelineError, match=f"{path}: missing array\\(s\\) y"):
        files.read_xy(str(path))


# --- CSV --------------------------------------------------------------------------------------

def test_csv_round_trip_is_exact(tmp_path):
    import pandas as pd

    path = tmp_path / "d.csv"
    frame = pd.DataFrame({"X1": [0.1 + 0.2, -1e-300, 1 / 3], "color": ["c1", "007", "c2"]})
    files.write_csv(str(path), frame)
    assert path.read_text().splitlines()[0] == "X1,color"
    loaded = pd.read_csv(path, dtype={"color": str})
    assert loaded["X1"].tolist() == frame["X1"].tolist()
    assert loaded["color"].tolist() == ["c1", "007", "c2"]


# --- figures ----------------------------------------------------------------------------------

def _figure():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    ax = figure.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 1])
    ax.set_title("spiral")
    return figure


def test_save_figure_writes_identical_png_twice(tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    figure = _figure()
    files.save_figure(str(first), figure)
    files.save_figure(str(second), _figure())
    data = first.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data == second.read_bytes()
    assert b"Software" not in data  # no matplotlib version stamp
    assert _listing(tmp_path) == ["a.png", "b.png"]


def test_read_numeric_csv_columns_and_errors(tmp_path):
    path = tmp_path / "curves.csv"
    path.write_text("epoch,train_loss\n0,1.5\n1,0.25\n")
    columns = files.read_numeric_csv(str(path), required=("epoch",))
    assert columns["epoch"].tolist() == [0.0, 1.0]
    assert columns["train_loss"].tolist() == [1.5, 0.25]
    with pytest.raises(PipelineError, match=f"{path}: missing column\\(s\\) val_acc"):
        files.read_numeric_csv(str(path), required=("epoch", "val_acc"))
    path.write_text("epoch,train_loss\n0,abc\n")
    with pytest.raises(PipelineError, match="not an all-numeric CSV"):
        files.read_numeric_csv(str(path))
    with pytest.raises(PipelineError, match="file not found"):
        files.read_numeric_csv(str(tmp_path / "missing.csv"))


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        files.write_text(str(tmp_path / "out.txt"), "x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == mode


# --- outputs replace only regular files ---------------------------------------------------------

def _not_a_file(tmp_path, kind: str):
    """``out`` in tmp_path as ``kind``; returns (path, a check that it is still what it was)."""
    import stat

    path, target = tmp_path / "out", tmp_path / "target.txt"
    target.write_text("precious")
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "dangling symlink":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "symlink to a directory":
        (tmp_path / "d").mkdir()
        path.symlink_to(tmp_path / "d")
    elif kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "device":
        try:  # a /dev/null of our own: a test that failed must not replace the real one
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    before = os.lstat(path)

    def unchanged() -> None:
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
        assert target.read_text() == "precious"
    return path, unchanged


NOT_FILES = {"symlink": "a symlink", "dangling symlink": "a symlink",
             "symlink to a directory": "a symlink", "directory": "a directory",
             "FIFO": "a FIFO", "device": "a device"}


@pytest.mark.parametrize("kind", list(NOT_FILES))
def test_an_output_never_replaces_what_is_not_a_regular_file(tmp_path, kind):
    path, unchanged = _not_a_file(tmp_path, kind)
    listing = _listing(tmp_path)
    written = []
    with pytest.raises(PipelineError) as caught:
        files.atomic_write(str(path), written.append)
    assert str(caught.value) == (f"{path}: is {NOT_FILES[kind]}, not a file: "
                                 "refusing to replace it")
    assert written == []  # refused before anything was written
    unchanged()
    assert _listing(tmp_path) == listing


def test_check_replaceable_prefixes_the_flag_and_passes_files(tmp_path):
    files.check_replaceable(str(tmp_path / "absent"))
    (tmp_path / "file").write_text("x")
    files.check_replaceable(str(tmp_path / "file"))
    with pytest.raises(PipelineError, match=f"^--output {tmp_path}: is a directory, not a file"):
        files.check_replaceable(str(tmp_path), "--output")


def test_a_symlink_appearing_while_writing_is_not_replaced(tmp_path):
    path, target = tmp_path / "out", tmp_path / "target.txt"
    target.write_text("precious")

    def writer(handle):
        handle.write(b"new")
        path.symlink_to(target)  # someone else, meanwhile

    with pytest.raises(PipelineError, match="is a symlink, not a file: refusing to replace it"):
        files.atomic_write(str(path), writer)
    assert path.is_symlink() and target.read_text() == "precious"
    assert _listing(tmp_path) == ["out", "target.txt"]


# --- the environment failing a write ------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS,
                                  errno.EACCES])
def test_a_failing_write_is_one_error_naming_the_output(tmp_path, code):
    path = tmp_path / "out.csv"
    path.write_text("previous")

    def writer(handle):
        handle.write(b"half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(PipelineError) as caught:
        files.atomic_write(str(path), writer)
    assert str(caught.value) == f"{path}: cannot write ({os.strerror(code)})"
    assert path.read_text() == "previous"
    assert _listing(tmp_path) == ["out.csv"]


def test_an_output_under_a_file_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PipelineError, match=f"^{tmp_path}/file/out.json: cannot write "):
        files.write_json(str(tmp_path / "file" / "out.json"), {"a": 1})


_FSIZE_SCRIPT = """
import resource, signal, sys
from nnpipe.core import files
from nnpipe.core.errors import PipelineError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    files.write_bytes(sys.argv[1], b"x" * 100_000)
except PipelineError as exc:
    print(exc)
"""


def test_a_file_size_limit_really_hit_keeps_the_previous_output(tmp_path):
    """EFBIG for real: the write passes RLIMIT_FSIZE in a child process."""
    import subprocess
    import sys

    path = tmp_path / "big.bin"
    path.write_text("previous")
    result = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == f"{path}: cannot write (File too large)\n"
    assert path.read_text() == "previous"
    assert _listing(tmp_path) == ["big.bin"]


# --- .npz headers are checked before anything is allocated --------------------------------------

def _npz_with_header(path, shape, data: bytes, descr: str = "<f8", name: str = "W1") -> None:
    import io as stdio

    header = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + data)


@pytest.mark.parametrize("shape, data, claimed", [
    ((10**12,), b"\0" * 16, "(1000000000000,) of float64 (8000000000000 bytes) but holds 16"),
    ((10**6, 10**6), b"", "(1000000, 1000000) of float64 (8000000000000 bytes) but holds 0"),
    ((3,), b"\0" * 16, "(3,) of float64 (24 bytes) but holds 16"),
    ((1,), b"\0" * 16, "(1,) of float64 (8 bytes) but holds 16"),
])
def test_read_npz_refuses_a_header_claiming_more_than_the_entry_holds(tmp_path, shape, data,
                                                                      claimed):
    path = tmp_path / "weights.npz"
    _npz_with_header(path, shape, data)
    assert path.stat().st_size < 1000
    with pytest.raises(PipelineError) as caught:
        files.read_npz(str(path))
    assert str(caught.value) == f"{path}: entry W1.npy claims shape {claimed} bytes"


def test_read_npz_refuses_a_pickled_dtype_from_its_header(tmp_path):
    path = tmp_path / "weights.npz"
    _npz_with_header(path, (2,), b"\0" * 16, descr="|O")
    with pytest.raises(PipelineError, match=f"^{path}: holds pickled objects"):
        files.read_npz(str(path))


def test_read_npz_reads_a_compressed_archive(tmp_path, arrays):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, X=arrays["X"], y=arrays["y"])
    loaded = files.read_npz(str(path), ("X", "y"))
    np.testing.assert_array_equal(loaded["X"], arrays["X"])


def test_read_npz_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.npz")  # opening it would block until a writer comes
    with pytest.raises(PipelineError, match="fifo.npz: not a regular file"):
        files.read_npz(str(tmp_path / "fifo.npz"))
