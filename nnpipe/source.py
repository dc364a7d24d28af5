"""The bytes of a data set's source: a local CSV file or an http(s) URL, bounded in size,
and checked against the sha256 it is pinned to."""
from __future__ import annotations

import hashlib
import mmap
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Annotated, Any, Optional, Union

from pydantic import Field, StrictStr

from nnpipe.core.errors import PipelineError, short
from nnpipe.core.params import Number, Section, Text

MAX_TIMEOUT = 86_400  # seconds (a day): a socket timeout beyond ~1e9 overflows
# fetch.max_mb and predict's --max-mb: at most a terabyte, at least one byte (1e-6 MB is 1.05)
MAX_MB, MIN_MB = 1 << 20, 1e-6


class FetchParams(Section):
    source: Text  # a CSV path or an http(s) URL: fetch's dependency
    sha256: Optional[Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{64}$")]]
    timeout: Number = Field(gt=0, le=MAX_TIMEOUT)
    max_mb: Number = Field(ge=MIN_MB, le=MAX_MB)  # the largest CSV read


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


DEFAULT_MAX_MB = 1024


STDIN = "-"  # the source name that reads standard input
CHUNK = 1 << 16
# What read_source returns: bytes, or a local file's read-only map (slicing, ``in``, ``find``
# and the buffer protocol as bytes have; ``bytes(raw)`` where more is needed).
Raw = Union[bytes, mmap.mmap]


def read_source(source: str, timeout: float, max_bytes: int = DEFAULT_MAX_MB << 20,
                what: str = "fetch.source", limit: str = "fetch.max_mb") -> Raw:
    """The raw bytes of a local CSV file, an http(s) URL or ``-`` (stdin), at most
    ``max_bytes`` of them; a URL's whole answer within ``timeout`` seconds.

    A path must name a regular file: a device (/dev/zero), a FIFO or a directory would read
    forever, block, or fail later, so they are refused before anything is read. Its bytes
    are mapped, not copied (see :data:`Raw`).
    """
    if is_url(source):
        return _read_url(source, timeout, max_bytes, limit)
    if source == STDIN:
        return _read_capped(sys.stdin.buffer, max_bytes, source, limit)
    check_regular_file(source, max_bytes, what, limit)
    try:
        with open(source, "rb") as handle:
            try:
                return _capped(_mapped(handle), max_bytes, source, limit)
            except (OSError, ValueError):  # empty (as /proc's files say they are), or unmappable
                return _read_capped(handle, max_bytes, source, limit)
    except OSError as exc:
        raise PipelineError(f"{source}: cannot read ({exc.strerror})") from None


def _mapped(handle: Any) -> mmap.mmap:
    """A file's bytes, mapped read-only and paged in at once: Arrow parses the page cache
    itself, where reading a copy first took as long as the parse (0.2-0.6 s for 432 MB)."""
    return mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                     prot=mmap.PROT_READ)


EXPERIMENT_DIR = "/.dvc/tmp/exps/"  # where `dvc exp run --queue` runs an experiment


def check_in_experiment(source: str, cwd: str) -> None:
    """A path source must be in the copy of the repository a queued experiment runs in: that
    copy holds the last commit only, so a file never committed is not there (and DVC's own
    error would name a temporary path). Checked only when ``cwd`` is such a copy."""
    if is_url(source) or os.path.isabs(source) or EXPERIMENT_DIR not in cwd + "/" or \
            os.path.lexists(os.path.join(cwd, source)):
        return
    from dvc.repo import Repo  # only now: a stage output (data/spiral.csv) is made later

    with Repo(cwd) as repo:
        outs = {os.path.relpath(out.fs_path, cwd) for out in repo.index.outs}
    if os.path.normpath(source) not in outs:
        raise PipelineError(f"{source}: not in the queued experiment's copy of the repository "
                            "(fetch.source), which holds the last commit only: commit it (git "
                            "add and git commit, or dvc add and git commit) or give an "
                            "absolute path")


def _read_url(url: str, timeout: float, max_bytes: int, limit: str) -> bytes:
    """The body at ``url``, all of it (connection, headers, every byte) within ``timeout``
    seconds however slowly it comes: a socket timeout bounds one read only, so a worker
    thread reads and this one waits for it until the deadline. A late worker is abandoned:
    it stops at its next read."""
    late = PipelineError(f"{url}: cannot fetch (no complete answer within {timeout:g} s)")
    done: dict[str, Any] = {}
    worker = threading.Thread(target=_download, daemon=True,
                              args=(url, time.monotonic() + timeout, max_bytes, limit, done))
    worker.start()
    worker.join(timeout)
    if "data" in done:
        return done["data"]
    raise late if isinstance(done.get("error"), TimeoutError) else done.get("error", late)


def _download(url: str, deadline: float, max_bytes: int, limit: str,
              done: dict[str, Any]) -> None:
    """Put the body at ``url`` in ``done["data"]``, or the error in ``done["error"]``."""
    try:
        with urllib.request.urlopen(url, timeout=deadline - time.monotonic()) as response:
            chunks, size = [], 0
            while size <= max_bytes and time.monotonic() < deadline:
                chunk = response.read1(CHUNK)  # what one read gives: a drip cannot hold it
                if not chunk:
                    done["data"] = _capped(b"".join(chunks), max_bytes, url, limit)
                    return
                chunks.append(chunk)
                size += len(chunk)
            _capped(b"".join(chunks), max_bytes, url, limit)  # over the size, or late
    except urllib.error.HTTPError as exc:
        done["error"] = PipelineError(f"{url}: HTTP {exc.code} {short(exc.reason)}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)  # a socket timeout: the deadline, said as such
        done["error"] = reason if isinstance(reason, TimeoutError) else \
            PipelineError(f"{url}: cannot fetch ({short(str(reason))})")
    except PipelineError as exc:
        done["error"] = exc


def check_regular_file(path: str, max_bytes: int, what: str, limit: str) -> None:
    """A one-line error unless ``path`` is a regular file of at most ``max_bytes``."""
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found ({what})") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise PipelineError(f"{path}: is a directory, not a CSV file ({what})")
    if not stat.S_ISREG(info.st_mode):
        raise PipelineError(f"{path}: not a regular file (a device, FIFO or socket) ({what})")
    if info.st_size > max_bytes:
        raise PipelineError(f"{path}: {info.st_size} bytes, more than the {max_bytes} "
                            f"allowed ({limit})")


def _read_capped(stream: Any, max_bytes: int, source: str, limit: str) -> bytes:
    return _capped(stream.read(max_bytes + 1), max_bytes, source, limit)


def _capped(data: Raw, max_bytes: int, source: str, limit: str) -> Raw:
    if len(data) > max_bytes:
        raise PipelineError(f"{source}: more than the {max_bytes} bytes allowed ({limit})")
    return data


def check_sha256(data: Raw, expected: str | None, source: str) -> None:
    """The bytes must have the sha256 ``expected``; a URL source must name one (DVC tracks a
    URL by what its server reports, which may not change with the content)."""
    if expected is None and not is_url(source):
        return  # a path: DVC tracks the file's own hash
    actual = hashlib.sha256(data).hexdigest()
    if expected is None:
        raise PipelineError(f"{source}: a URL source must be pinned: set fetch.sha256 to "
                            f"{actual} (the sha256 of what it serves now)")
    if actual != expected.lower():
        raise PipelineError(f"{source}: sha256 {actual} does not match fetch.sha256 {expected}")
