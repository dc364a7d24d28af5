"""The launcher's side of a request: connect, hand over the stage and stdio, wait, leave alike.

Every wait has a timeout, and any OSError means "run the stage cold" (None).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

from warmstart.protocol import ACCEPTED, LENGTH, STATUS, process_context


def connect(path: str, timeout_s: float) -> socket.socket | None:
    """A connection to a running, not stopped, server at ``path``; None if there is none."""
    if _server_stopped(path):
        raise OSError(f"warm server for {path} is stopped")  # run cold; leave it alone
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout_s)
    try:
        conn.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    except OSError:
        conn.close()
        raise
    return conn


def _server_stopped(path: str) -> bool:
    """Whether the server's pid file names a stopped (SIGSTOP, traced) process."""
    try:
        with open(path[:-len(".sock")] + ".pid", encoding="ascii") as handle:
            pid = int(handle.read())
    except (OSError, ValueError):
        return False
    return _state(pid) in ("T", "t")


def _state(pid: int) -> str | None:
    """The process state letter /proc gives for ``pid`` (R, S, T, Z, ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def request(conn: socket.socket, stage: str, args: list[str], timeout_s: float) -> int | None:
    """Send the request and stdio; the fork's exit status, or None to run the stage here.

    None when the server declined, did not answer in time, or ended before the stage did
    (its fork is then gone too: the stage runs again, cold).
    """
    payload = json.dumps({"stage": stage, "args": args, "cwd": os.getcwd(),
                          "env": dict(os.environ), "umask": _umask(),
                          "context": process_context()}).encode()
    try:
        socket.send_fds(conn, [LENGTH.pack(len(payload)) + payload], _stdio())
        reply = _recv_exact(conn, 1 + STATUS.size)
    except OSError:  # including the timeout: a wedged server
        return None
    if reply[:1] != ACCEPTED or len(reply) != 1 + STATUS.size:
        return None  # declined, or the server went away before starting the stage
    fork = STATUS.unpack(reply[1:])[0]
    try:
        status = _await_status(conn, fork, timeout_s)
    except OSError:
        status = b""
    except KeyboardInterrupt:  # closing the connection makes the server kill the fork
        conn.close()
        _wait_gone(fork)
        _die_by(signal.SIGINT)  # as a plain process does on an unhandled Ctrl-C
    if len(status) == STATUS.size:
        return STATUS.unpack(status)[0]
    _wait_gone(fork)  # the fork dies with its server: make sure before the stage runs again
    print("stages: the warm server stopped answering before the stage's end was reported; "
          "running it cold", file=sys.stderr)
    return None


def _await_status(conn: socket.socket, fork: int, timeout_s: float) -> bytes:
    """The fork's exit status as the server reports it; b"" when the server ends first, or
    when the fork has ended and a stopped or wedged server does not report it in time."""
    import time

    conn.settimeout(1.0)
    data, ended = b"", None
    while len(data) < STATUS.size:
        try:
            chunk = conn.recv(STATUS.size - len(data))
        except TimeoutError:
            if not _running(fork):
                ended = ended or time.monotonic()
                if time.monotonic() - ended > timeout_s:
                    return b""
            continue
        if not chunk:
            return b""
        data += chunk
    return data


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie has)."""
    return _state(pid) not in (None, "Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Kill the fork ``pid`` if it is still there, and wait until it has gone."""
    import time

    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _die_by(signum: int) -> None:
    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)


def _stdio() -> list[int]:
    """fds 0, 1, 2 for the fork (/dev/null in place of a closed one)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR)
        fds.append(fd)
    return fds


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def exit_like(status: int | None) -> None:
    """Leave as the fork did: the same exit code, or death by the same signal."""
    if status is None:
        return
    if status < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.stdout.flush()
    os._exit(status & 0xFF if status >= 0 else 1)
