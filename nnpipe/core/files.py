"""Atomic, deterministic, pickle-free reading and writing of every artifact.

Every writer goes through :func:`atomic_path`: a temp file in the target
directory, then ``os.replace``, so a killed stage never leaves half a file. It
never replaces what is not a regular file (a symlink, a device, a FIFO, a
directory), and a failed write (a full disk, a read-only file system, a file
size limit) is one :class:`PipelineError` naming the output, the temp file
removed and the previous output left as it was. Nothing time- or host-dependent
goes into an output.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import tempfile
import zipfile
from typing import IO, Any, Callable, Iterator, Mapping

import numpy as np

from nnpipe.core.errors import PipelineError, short

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


_NOT_FILES = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"),
              (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a FIFO"),
              (stat.S_ISSOCK, "a socket"))


def check_replaceable(path: str, what: str = "") -> None:
    """A one-line error unless ``path`` is absent or a regular file, the only thing an output
    may replace: a rename over a symlink replaces the link (not its target), over a device
    node or a FIFO the node itself. ``what`` (e.g. ``--output``) prefixes the message."""
    shown = f"{what} {path}" if what else path
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PipelineError(f"{shown}: cannot write ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_FILES if test(mode)), "not a regular file")
        raise PipelineError(f"{shown}: is {kind}, not a file: refusing to replace it")


def _write_error(path: str, exc: OSError) -> PipelineError:
    reason = os.strerror(exc.errno) if exc.errno else exc.strerror or exc.__class__.__name__
    return PipelineError(f"{path}: cannot write ({reason})")  # the OS's words, Arrow's too


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temp path beside ``path``; on success rename it into place, else remove it.

    ``path`` must be absent or a regular file (checked before anything is written and again
    before the rename). An OSError on the way (ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, ...)
    becomes a PipelineError naming ``path``; the previous ``path`` is never touched.
    """
    check_replaceable(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would have made it; mkstemp makes 0600
        check_replaceable(path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a binary temp file, flush it to disk, rename it to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())


def fsync(path: str) -> None:
    """Flush a file another writer closed to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_bytes(path: str, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"refusing to write non-finite number {value!r} to JSON")
    return value


def dumps_json(data: Any) -> str:
    return json.dumps(_plain(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str, data: Any) -> None:
    """Write JSON with sorted keys and plain floats (what `dvc metrics diff` reads well)."""
    write_text(path, dumps_json(data))


def read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _npz_to(handle: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Stream an .npz archive with a fixed timestamp (``np.savez`` stamps the current time)
    into ``handle``: each array goes to its entry once, never copied whole in memory."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            array = np.ascontiguousarray(arrays[name])
            if array.dtype == object:
                raise ValueError(f"array {name!r} has dtype object; only plain arrays are saved")
            info = _zip_entry(f"{name}.npy")
            info.file_size = array.nbytes + 128  # ~ the .npy's size: zip64 as writestr decides
            with archive.open(info, "w") as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)


def write_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda handle: _npz_to(handle, arrays))


def read_npz(path: str, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load an .npz without unpickling anything; ``keys`` must all be present.

    Each entry's .npy header is read first and its shape x itemsize compared with the
    entry's size, itself bounded by the archive's, so a tiny file whose header claims 10**12
    elements is refused before anything is allocated.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise PipelineError(f"{path}: not a regular file, not a valid .npz archive")
        with zipfile.ZipFile(path) as archive:
            arrays = {entry.filename.removesuffix(".npy"): _read_entry(archive, entry,
                                                                        info.st_size, path)
                      for entry in archive.infolist()}
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (ValueError, zipfile.BadZipFile, EOFError, NotImplementedError):
        raise PipelineError(f"{path}: not a valid .npz archive") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror or 'not a valid .npz'})") \
            from None
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise PipelineError(f"{path}: missing array(s) {', '.join(missing)}")
    return arrays


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
_MAX_DEFLATE_RATIO = 1100  # deflate expands at most ~1032-fold


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, archive_size: int,
                path: str) -> np.ndarray:
    """One .npy entry, its header checked against the entry's real size before reading."""
    name = entry.filename
    stored = entry.compress_type == zipfile.ZIP_STORED
    if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) \
            or entry.compress_size > archive_size \
            or entry.file_size > (entry.compress_size if stored
                                  else _MAX_DEFLATE_RATIO * entry.compress_size + 64):
        raise PipelineError(f"{path}: entry {short(name)} claims {entry.file_size} bytes, "
                            f"more than the archive can hold ({archive_size} bytes)")
    with archive.open(entry) as handle:
        try:
            version = np.lib.format.read_magic(handle)
        except ValueError:
            raise PipelineError(f"{path}: not a valid .npz archive "
                                "(holds entries that are not arrays)") from None
        if version not in _HEADER_READERS:
            raise PipelineError(f"{path}: entry {short(name)} is .npy format {version}, "
                                "not 1.0 or 2.0")
        shape, _, dtype = _HEADER_READERS[version](handle)
        data_bytes = entry.file_size - handle.tell()
    if dtype.hasobject:
        raise PipelineError(f"{path}: holds pickled objects, which are never loaded")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != data_bytes:
        raise PipelineError(f"{path}: entry {short(name)} claims shape {short(shape)} of "
                            f"{dtype} ({claimed} bytes) but holds {data_bytes} bytes")
    with archive.open(entry) as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def read_xy(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A processed split: ``X: (N, D) float64`` and ``y: (N,) int64``."""
    arrays = read_npz(path, ("X", "y"))
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or not np.issubdtype(y.dtype, np.integer):
        raise PipelineError(f"{path}: expected X (N, D) and integer y (N,), "
                            f"got {X.shape} and {y.shape} {y.dtype}")
    return X.astype(np.float64), y.astype(np.int64)


def write_csv(path: str, frame: Any) -> None:
    """Write a pandas DataFrame as CSV (no index; floats round-trip exactly)."""
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def read_numeric_csv(path: str, required: tuple[str, ...] = (),
                     delimiter: str = ",") -> dict[str, np.ndarray]:
    """A small all-numeric CSV or TSV (such as DVCLive's training curves) as column -> float64
    array, no pandas."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter=delimiter))
        header, body = rows[0], np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (IndexError, ValueError, UnicodeDecodeError):
        raise PipelineError(f"{path}: not an all-numeric CSV with a header row") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    missing = [name for name in required if name not in header]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}")
    return {name: body[:, i] for i, name in enumerate(header)}


def replace_dir(source: str, target: str) -> None:
    """Copy the tree ``source`` to a temp directory beside ``target``, then swap it in for
    ``target`` (whatever ``target`` held before is removed only once the copy is complete)."""
    import shutil

    parent = os.path.dirname(target) or "."
    tmp = os.path.join(parent, f".{os.path.basename(target)}.tmp")
    try:
        os.makedirs(parent, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(target, exc) from None


def save_figure(path: str, figure: Any, dpi: int = 100) -> None:
    """Save a matplotlib Figure as a PNG with no varying metadata."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    write_bytes(path, buffer.getvalue())
