"""The ``NNPIPE_WARM*`` variables the launcher reads, checked before it does anything.

A value this module cannot take stops the launcher with one line naming the variable and the
value (exit 2), before any socket, lock or pid file is made.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, NamedTuple

ENABLE_ENV = "NNPIPE_WARM"          # 1 (or unset): warm start on; 0: every stage in-process
DIR_ENV = "NNPIPE_WARM_DIR"         # where sockets live (default /tmp/nnpipe-warm-<uid>)
IDLE_ENV = "NNPIPE_WARM_IDLE"       # seconds a server waits for a request before it exits
TIMEOUT_ENV = "NNPIPE_WARM_TIMEOUT"  # seconds to wait for a server or its lock
DEFAULT_IDLE_S, DEFAULT_TIMEOUT_S = 900.0, 30.0
MAX_S = 1e9  # more would overflow a socket timeout


class SettingError(ValueError):
    """A variable's value the launcher refuses; the message names both."""


class Settings(NamedTuple):
    enabled: bool
    dir: str
    idle_s: float
    timeout_s: float


def read(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    enabled = environ.get(ENABLE_ENV, "1")
    if enabled not in ("0", "1"):
        raise SettingError(f"{ENABLE_ENV}={_shown(enabled)} must be 1 (warm start) or 0 (every "
                           "stage in its own process)")
    base = environ.get(DIR_ENV, f"/tmp/nnpipe-warm-{os.getuid()}")
    if not os.path.isabs(base):
        raise SettingError(f"{DIR_ENV}={_shown(base)} must be an absolute path")
    parent = os.path.dirname(os.path.normpath(base))
    if not os.path.isdir(parent):
        raise SettingError(f"{DIR_ENV}={_shown(base)} must be in a directory that exists "
                           f"(no {parent}; only the last directory is ever made)")
    return Settings(enabled == "1", base, _seconds(environ, IDLE_ENV, DEFAULT_IDLE_S),
                    _seconds(environ, TIMEOUT_ENV, DEFAULT_TIMEOUT_S))


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SettingError(f"{name}={_shown(text)} must be a number of seconds > 0")
    if value > MAX_S:
        raise SettingError(f"{name}={_shown(text)} must be at most {MAX_S:g} seconds")
    return value


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")
