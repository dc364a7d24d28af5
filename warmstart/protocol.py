"""What the launcher and the warm server share: the wire format, what is preloaded (recorded in
preload.json), and the process context a request must match.

A request is one message on the server's Unix socket: ``LENGTH`` (4 bytes) and a JSON object
(stage, args, cwd, env, umask, context), with the client's fds 0, 1 and 2 attached
(SCM_RIGHTS). The server answers ``DECLINED`` (run the stage cold) or ``ACCEPTED`` and the
fork's pid (``STATUS``), then the fork's exit status (``STATUS``, negative: killed by that
signal) when it ends. The client closing the connection makes the server kill the fork.
"""
from __future__ import annotations

import json
import os
import struct

ACCEPTED, DECLINED = b"A", b"D"
LENGTH = struct.Struct("!I")
STATUS = struct.Struct("!i")
SERVER_MODULE = "warmstart.server"  # started as ``python -m warmstart.server FD IDLE_S``
# The third-party modules the stages import, their lazy imports included (torch's compiler
# stack, pydantic's parts): the server pays them once, not each stage. Recorded from a run of
# every stage by ``python -m warmstart.record`` (tests/test_warm_contract.py re-records).
PRELOAD_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "preload.json")
with open(PRELOAD_FILE, encoding="utf-8") as _handle:
    PRELOAD: tuple[str, ...] = tuple(json.load(_handle)["preload"])
CWD_CONFIG_FILES = ("matplotlibrc",)  # read from the working directory at import


def process_context() -> dict:
    """What a forked stage would otherwise inherit from the server instead of its caller."""
    import resource

    limits = {name: list(resource.getrlimit(getattr(resource, name)))
              for name in sorted(dir(resource)) if name.startswith("RLIMIT_")}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            cgroup = handle.read()
    except OSError:
        cgroup = ""
    return {"rlimits": limits, "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "affinity": sorted(os.sched_getaffinity(0)), "cgroup": cgroup}


def is_server(pid: int) -> bool:
    """Whether ``pid`` is still a warm server (a stale pid file may name a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return f"\0-m\0{SERVER_MODULE}\0".encode() in handle.read()
    except OSError:
        return False
