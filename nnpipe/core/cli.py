"""What every command-line entry point shares: logging set-up and one-line errors."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from typing import TYPE_CHECKING, Callable, Iterator, NoReturn

from nnpipe.core.errors import PipelineError, short

if TYPE_CHECKING:
    import argparse

DEBUG_ENV = "NNPIPE_DEBUG"
# The environment failing an operation: one line, not a traceback (files.atomic_path names the
# output of the writes it makes; this catches any other).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS,
                                errno.EACCES, errno.EPERM, errno.EIO})
STATS_ENV = "NNPIPE_STAGE_STATS"  # bench/run.py: append each stage's wall time and peak RSS here
MAX_MESSAGE = 500  # characters of an error line; echoed values are cut well before


def _record_stats(name: str, path: str) -> None:
    """One JSON line: the stage, seconds since its process started, and its peak RSS in MB."""
    import json
    import resource

    with open("/proc/self/stat", encoding="ascii") as handle:
        start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime", encoding="ascii") as handle:
        uptime = float(handle.read().split()[0])
    wall = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"stage": name, "wall_s": round(wall, 3),
                                 "peak_rss_mb": round(peak_mb, 1)}) + "\n")


@contextlib.contextmanager
def one_line_errors(name: str) -> Iterator[None]:
    """Turn a PipelineError, or an OSError the environment caused (a full disk, a read-only
    file system, a file size limit, no permission), into ``<name>: error: ...`` on stderr and
    exit 2. Set NNPIPE_DEBUG=1 to see the traceback instead."""
    try:
        yield
    except (PipelineError, OSError) as exc:
        if os.environ.get(DEBUG_ENV) or (isinstance(exc, OSError)
                                         and exc.errno not in ENVIRONMENT_ERRNOS):
            raise
        message = str(exc) if isinstance(exc, PipelineError) else \
            f"{exc.filename if exc.filename is not None else 'output'}: {exc.strerror}"
        print(f"{name}: error: {short(' '.join(message.split()), MAX_MESSAGE)}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def stage(name: str) -> Iterator[logging.Logger]:
    """Configure logging once (``<name>: ...`` on stderr), errors as one line
    (one_line_errors), and the stage's wall time and peak RSS appended to $NNPIPE_STAGE_STATS."""
    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s", stream=sys.stderr)
    with one_line_errors(name):
        yield logging.getLogger(name)
        if os.environ.get(STATS_ENV):
            _record_stats(name, os.environ[STATS_ENV])


def name_value_pairs(parser: "argparse.ArgumentParser", rest: list[str]) -> dict[str, str]:
    """``--NAME VALUE ...`` (DVC's unpacking of a dict in a cmd) as an ordered mapping.

    Anything else is a usage error of ``parser``; a NAME must be an identifier, given once.
    """
    pairs: dict[str, str] = {}
    if not rest:
        parser.error("expected --NAME VALUE pairs, one per model")
    for flag, value in zip(rest[::2], rest[1::2] + [None] * (len(rest) % 2)):
        name = flag[2:] if flag.startswith("--") else ""
        if not name.isidentifier() or value is None or value.startswith("--"):
            parser.error(f"expected --NAME VALUE, got {short(' '.join(rest[:6]))}")
        if name in pairs:
            parser.error(f"--{name} given twice")
        pairs[name] = value
    return pairs


def run_command(main: Callable[[], None]) -> NoReturn:
    """Run a command's ``main()`` and end the process without interpreter teardown.

    Tearing down torch, scikit-learn and matplotlib at exit costs 0.1-0.5 s per
    process, paid by every stage of every `dvc repro`. Every output is already
    written, flushed, fsync'ed and renamed by then, so the process flushes its
    streams and logging and leaves with ``os._exit``. A crash (a bug) still
    raises with its traceback.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a full disk or a closed pipe: already reported, or nothing to say
            code = code or 2
    os._exit(code)
