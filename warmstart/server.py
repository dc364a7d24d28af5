"""The warm server behind ``python -m stages``: preload, accept, fork, report.

Started by the launcher (warmstart.spawn) as ``python -m warmstart.server FD IDLE_S`` with the
bound socket FD, detached from the client that started it, one per key (warmstart.key). It
imports the third-party libraries once, then for each request forks; the fork takes the
client's stdio, working directory, environment, umask and argv and runs the stage with the
runner (``stages/__main__.py``). The server sends ``A`` and the fork's pid when the fork has
started and the fork's exit status when it ends (warmstart.protocol), and kills the fork with SIGKILL if the
client goes away first; a fork dies with its server (PR_SET_PDEATHSIG). It declines (``D``,
and the client runs the stage cold) a client whose process context differs from its own or
whose working directory holds a file the libraries read at import, since the preloaded
libraries could not honour them; and it retires, declining, once any code it loaded has
changed on disk (warmstart.snapshot). It exits after IDLE_S seconds without a request, or on
SIGTERM (``python -m stages --stop``).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import json
import os
import select
import signal
import socket
import sys
import time

from warmstart import protocol
from warmstart.protocol import ACCEPTED, CWD_CONFIG_FILES, DECLINED, LENGTH, STATUS
from warmstart.snapshot import Snapshot


def main(argv: list[str]) -> None:
    """``python -m warmstart.server FD IDLE_S``."""
    serve(int(argv[0]), float(argv[1]))


def serve(listener_fd: int, idle_s: float) -> None:
    listener = socket.socket(fileno=listener_fd)
    path = listener.getsockname()
    pid_file = path[:-5] + ".pid"  # written by the client that started us
    os.chdir("/")  # no client's matplotlibrc (or other local config) gets preloaded
    context = protocol.process_context()
    _preload()
    baseline = Snapshot()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, _terminate)  # python -m stages --stop
    children: dict[int, socket.socket] = {}
    last = time.monotonic()
    try:
        while True:
            _reap(children)
            if children:
                last = time.monotonic()
            elif time.monotonic() - last > idle_s:
                break
            ready, _, _ = select.select([listener, wake_r, *children.values()], [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 4096)
            if listener in ready:
                last = time.monotonic()
                if not _accept(listener, children, baseline, context, (wake_r, wake_w)):
                    break  # code it loaded changed on disk: stop serving this key
            for pid, conn in list(children.items()):
                if conn in ready:  # the client closed (or was killed): so is its stage
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    finally:
        _shutdown(listener, path, pid_file, children)


def _terminate(*_) -> None:
    raise SystemExit(0)


def _preload() -> None:
    """Import ``PRELOAD`` from the keyed ``sys.path`` entries only: not from sys.path[0], the
    directory of the client that started this server (a fork gets its own client's)."""
    first = None if sys.flags.safe_path else sys.path.pop(0)
    try:
        for module in protocol.PRELOAD:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    finally:
        if first is not None:
            sys.path.insert(0, first)


def _accept(listener: socket.socket, children: dict, baseline: Snapshot, context: dict,
            wake: tuple) -> bool:
    """Serve one connection; False when this server is stale and must stop."""
    conn, _ = listener.accept()
    try:
        request, fds = _read_request(conn)
    except (OSError, ValueError):
        conn.close()
        return True
    if baseline.changed():
        _decline(conn, fds)  # the client runs cold, with the code now on disk
        return False
    if request.get("context") != context or _local_code_or_config(request["cwd"], baseline):
        _decline(conn, fds)  # the client runs cold, under its own limits, config and code
        return True
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, [listener, conn, *children.values()], wake, server)
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        conn.sendall(ACCEPTED + STATUS.pack(pid))
    children[pid] = conn
    return True


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(10)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < LENGTH.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("malformed request")
    size = LENGTH.unpack(data[:LENGTH.size])[0]
    data = data[LENGTH.size:]
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("truncated request")
        data += chunk
    conn.settimeout(None)
    return json.loads(data), fds


def _local_code_or_config(cwd: str, baseline: Snapshot) -> bool:
    """Whether ``cwd`` holds a file the libraries read at import, or a module or package named
    like one this server has loaded: a fresh process would import that one (sys.path[0])."""
    if any(os.path.exists(os.path.join(cwd, name)) for name in CWD_CONFIG_FILES):
        return True
    try:
        entries = os.listdir(cwd)
    except OSError:
        return True
    suffixes = importlib.machinery.all_suffixes()
    for entry in entries:
        name, dot, rest = entry.partition(".")
        if name in baseline.top_level and (
                f".{rest}" in suffixes if dot
                else os.path.isfile(os.path.join(cwd, entry, "__init__.py"))):
            return True
    return False


def _die_with(server: int) -> None:
    """Have the kernel SIGKILL this fork when its server dies (Linux), and not start if the
    server is already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        os._exit(1)


def _decline(conn: socket.socket, fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        conn.sendall(DECLINED)
    conn.close()


def _child(request: dict, fds: list[int], sockets: list, wake: tuple, server: int) -> None:
    """In the fork: become the client's stage process and run it; never returns."""
    code = 1
    try:
        _die_with(server)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for sock in sockets:
            sock.close()
        for fd in wake:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _become(request)
        import importlib

        importlib.import_module("stages.__main__").execute(request["stage"], request["args"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # a bug: show it as a fresh process would
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _become(request: dict) -> None:
    """The client's working directory, environment, argv, stdio, and fresh nnpipe/stages code."""
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    for name in list(sys.modules):
        if name.split(".")[0] in ("nnpipe", "stages"):
            del sys.modules[name]
    if not sys.flags.safe_path:  # python -P: no working directory on sys.path
        sys.path[0] = request["cwd"]
    importlib.invalidate_caches()
    sys.argv = [sys.argv[0], *request["args"]]
    encoding = sys.stdout.encoding
    sys.stdin = open(0, encoding=encoding, closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, encoding=encoding,
                      closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding=encoding, errors="backslashreplace",
                      closefd=False)


def _reap(children: dict[int, socket.socket]) -> None:
    """Send each finished fork's exit status to its client."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(STATUS.pack(os.waitstatus_to_exitcode(status)))
            conn.close()


def _shutdown(listener: socket.socket, path: str, pid_file: str, children: dict) -> None:
    """Stop taking requests; decline any already queued so their clients run cold."""
    for stale in (path, pid_file):
        with contextlib.suppress(OSError):
            os.unlink(stale)
    listener.setblocking(False)
    with contextlib.suppress(OSError):
        while True:
            conn, _ = listener.accept()
            conn.setblocking(True)
            with contextlib.suppress(OSError, ValueError):
                _decline(conn, _read_request(conn)[1])
    listener.close()
    while children:
        _reap(children)
        time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
