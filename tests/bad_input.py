"""What a case of the contract table (tests/test_reliability.py) plants in its directory: bad
bytes, edits of the good run's files, links, FIFOs, devices, or nothing where a file was."""
from __future__ import annotations

import functools
import io
import json
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import tiny_params

GARBAGE_BYTES = 5 * 2**20


@dataclass(frozen=True)
class Edit:
    """A planted file: the good run's bytes changed by ``change``."""
    change: Callable[[bytes], bytes]


@dataclass(frozen=True)
class Make:
    """A planted path made by ``make(path, root)``: a directory, a link, a FIFO, nothing."""
    make: Callable[[Path, Path], None]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _device(path: Path, root: Path) -> None:
    try:  # a /dev/null of our own, never the real one
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")


ABSENT = Make(lambda path, root: _remove(path))
IS_DIR = Make(lambda path, root: (_remove(path), path.mkdir()))
A_FIFO = Make(lambda path, root: os.mkfifo(path))
A_DEVICE = Make(_device)
FIFO = "<a fifo>"         # fetch.source / --input: a named pipe no one writes to
DEV_ZERO = "/dev/zero"   # fetch.source / --input: endless bytes


def symlink_to(rel: str) -> Make:
    return Make(lambda path, root: path.symlink_to(root / rel))


def hard_link_to(rel: str) -> Make:
    return Make(lambda path, root: os.link(root / rel, path))


def json_edit(change: Callable[[dict], Any]) -> Edit:
    def apply(old: bytes) -> bytes:
        document = json.loads(old)
        change(document)
        return json.dumps(document).encode()  # NaN and Infinity as Python's json writes them
    return Edit(apply)


def npz_of(**arrays: np.ndarray) -> Callable[[], bytes]:
    def make() -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()
    return make


def npz_edit(change: Callable[[str, np.ndarray], np.ndarray]) -> Edit:
    def apply(old: bytes) -> bytes:
        with np.load(io.BytesIO(old), allow_pickle=False) as archive:
            return npz_of(**{k: change(k, archive[k]) for k in archive.files})()
    return Edit(apply)


def zip_entry(name: str, content: bytes) -> Edit:
    """A zip archive (an .npz) with entry ``name`` replaced by ``content``."""
    def apply(old: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(old)) as archive:
            entries = {n: archive.read(n) for n in archive.namelist()}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for n, data in {**entries, name: content}.items():
                archive.writestr(n, data)
        return buffer.getvalue()
    return Edit(apply)


def claims_1e12_elements() -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    return header.getvalue() + b"\0" * 64


def garbage() -> bytes:
    return np.random.RandomState(0).bytes(GARBAGE_BYTES)


def zip_of_non_arrays() -> bytes:
    """A valid zip archive with members X and y that are not .npy arrays (e.g. a renamed .jar)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X", b"not an array")
        archive.writestr("y", b"nor this")
    return buffer.getvalue()


@functools.cache
def _typed(csv: str, features: tuple, categorical: tuple, missing: str):
    from nnpipe import data

    return data.read_typed(csv.encode(), "x", list(features), "color", list(categorical), missing)


def fetched(csv: Callable[[], str] | str, part: str, features=("X1", "X2"), categorical=(),
            missing="error", empty: str | None = None) -> Callable[[], bytes]:
    """fetch's ``table`` (Parquet) or ``schema`` (JSON) for a CSV, as split would read them
    (``empty``: that column's every cell then made missing)."""
    @functools.cache
    def make() -> bytes:
        typed = _typed(csv() if callable(csv) else csv, tuple(features), tuple(categorical),
                       missing)
        if part == "schema":
            return json.dumps(typed.schema.to_dict()).encode()
        table = typed.table
        if empty:
            at = table.schema.get_field_index(empty)
            table = table.set_column(at, empty, pa.nulls(len(table), table.field(at).type))
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()
    return make


def parquet_of(**columns: list) -> Callable[[], bytes]:
    def make() -> bytes:
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns), buffer)
        return buffer.getvalue()
    return make


def params_text_with(extra: str = "", **replace: str) -> Callable[[], bytes]:
    """A params.yaml that is tiny_params() with ``extra`` lines appended and top-level
    ``replace``d values written verbatim (YAML that yaml.safe_dump would not write)."""
    def make() -> bytes:
        p = tiny_params()
        for key in replace:
            p[key] = f"@{key}@"
        text = yaml.safe_dump(p, sort_keys=False)
        for key, raw in replace.items():
            text = text.replace(f"'@{key}@'", raw)
        return (text + extra).encode()
    return make
