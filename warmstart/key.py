"""Which warm server a caller may use: one socket per key, the key being everything a preloaded
library could have read at import.

Servers are keyed by interpreter and its options, ``sys.path``, the whole environment but for
the few variables that change from one command to the next (``PER_INVOCATION_ENV``), the
process context a fork would inherit from its server (rlimits, nice, CPU affinity, cgroup),
and the text of this package. A list of the variables that matter is the other way to key; it
missed ATEN_* and NPY_*: libraries, glibc and OpenMP runtimes read more at import than any list
keeps up with, while the per-command variables are few and known.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from typing import NamedTuple

from warmstart.protocol import process_context

# Left out of the key: set per command by DVC, the shell or us, and read by no library at import.
PER_INVOCATION_ENV = ("DVC_", "NNPIPE_")  # prefixes
PER_INVOCATION_NAMES = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES",
                                  "PYTEST_CURRENT_TEST"})


class Key(NamedTuple):
    path: str              # the server's socket; its ``.lock`` and ``.pid`` files sit beside it
    env: dict[str, str]    # the environment the key was taken in (the server starts with it)
    flags: list[str]       # this interpreter's -W/-X/-O/... options (the server's too)

    def sibling(self, suffix: str) -> str:
        return self.path[:-len(".sock")] + suffix


def warm_dir(base: str) -> str | None:
    """``base``, made if need be (never its parents), if only this user can use it; else None
    (stages run cold)."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, mode=0o700)
        info = os.stat(base)
    except OSError:
        return None
    mine = info.st_uid == os.getuid() and not info.st_mode & 0o077
    return base if mine and stat.S_ISDIR(info.st_mode) else None


def for_caller(base: str) -> Key | None:
    """This process's key, with its socket in ``base``; None where no server can serve it."""
    if not hasattr(os, "fork") or warm_dir(base) is None:
        return None
    env = dict(os.environ)
    flags = _interpreter_flags()
    keyed_env = sorted((k, v) for k, v in env.items()
                       if not k.startswith(PER_INVOCATION_ENV) and k not in PER_INVOCATION_NAMES)
    key = json.dumps([sys.executable, sys.version, flags, sys.path[1:], keyed_env,
                      process_context(), _source_digest()])
    path = os.path.join(base, hashlib.sha256(key.encode()).hexdigest()[:24] + ".sock")
    if len(path.encode()) >= 100:  # AF_UNIX paths hold 108 bytes
        return None
    return Key(path, env, flags)


def _interpreter_flags() -> list[str]:
    import subprocess

    return subprocess._args_from_interpreter_flags()  # what multiprocessing uses too


def _source_digest() -> str:
    """The hash of this package's modules and preload.json: a changed launcher, server or
    PRELOAD gets a new server."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(here)):
        if name.endswith((".py", ".json")):
            with open(os.path.join(here, name), "rb") as handle:
                digest.update(name.encode() + b"\0" + handle.read())
    return digest.hexdigest()
