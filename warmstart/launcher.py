"""Warm start: run a stage in a fork of a server that has already imported the heavy libraries.

Every stage of `dvc repro` is a new `python` process, and importing torch, scikit-learn or
matplotlib costs 0.5-1.5 s each time. ``python -m stages <stage> ARGS`` (each cmd in
dvc.yaml) asks a per-user server, which imported them once, to fork. The fork runs the stage
with the client's argv, working directory, environment and stdin/stdout/stderr; its exit
status comes back to the client, and killing the client kills the fork.

Only third-party libraries are preloaded. ``nnpipe`` and ``stages`` are imported afresh in
every fork from the client's working directory, so edited code always runs. A client that
finds no server starts one and runs its stage in-process meanwhile (the server warms up on
another core). The server exits after ``NNPIPE_WARM_IDLE`` seconds (default 900) without a
request, as soon as a directory on its ``sys.path`` changes (a package was installed or
removed), or on ``python -m stages --stop``. Servers are keyed by interpreter, ``sys.path``,
the whole environment but for the few variables that change from one command to the next
(``PER_INVOCATION_ENV``), the process context a fork would inherit from the server (rlimits,
nice, CPU affinity, cgroup), and this file's text. A server serves only callers whose process
context is its own (it checks) and whose working directory holds no file the libraries read
at import (``CWD_CONFIG_FILES``); other callers run cold. Every wait
on the server or its lock has a timeout, and any OSError on the way runs the stage cold.
``NNPIPE_WARM=0`` runs every stage in-process.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys

DISABLE_ENV, DIR_ENV, IDLE_ENV = "NNPIPE_WARM", "NNPIPE_WARM_DIR", "NNPIPE_WARM_IDLE"
# torch.optim and torch.use_deterministic_algorithms import the compiler stack (torch._dynamo,
# ~1.4 s, ~800 modules) on first use, and pydantic loads its parts lazily on first use: the
# server pays both once, not each stage (tests/test_training.py checks what a fork still loads).
PRELOAD = ("numpy", "pandas", "yaml", "ruamel.yaml", "threadpoolctl", "sklearn.model_selection",
           "sklearn.preprocessing", "sklearn.metrics", "torch", "torch.nn", "torch.optim",
           "torch._dynamo", "torch.profiler", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "pydantic", "pydantic.main", "pydantic.fields",
           "pydantic.types", "pydantic._internal._validators", "pydantic.plugin._loader")
# Left out of the server key: set per command by DVC, the shell or us, and read by no library
# at import. Everything else is in the key, since a library may read it at import; a list of
# the variables that matter missed ATEN_* and NPY_* (issues 11 and 14).
PER_INVOCATION_ENV = ("DVC_", "NNPIPE_")  # prefixes
PER_INVOCATION_NAMES = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES",
                                  "PYTEST_CURRENT_TEST"})
CWD_CONFIG_FILES = ("matplotlibrc",)  # read from the working directory at import
TIMEOUT_ENV = "NNPIPE_WARM_TIMEOUT"   # seconds to wait for the server or its lock (default 30)
ACCEPTED, DECLINED = b"A", b"D"
LENGTH = struct.Struct("!I")
STATUS = struct.Struct("!i")


# --- client -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """``python -m stages <stage> ARGS``: run ``stages.<stage>`` warm or, failing that, here."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--stop"]:
        raise SystemExit(stop_servers())
    if not argv or argv[0].startswith("-") or not argv[0].isidentifier():
        raise SystemExit("usage: python -m stages <stage> [ARGS...] | python -m stages --stop")
    stage, args = argv[0], argv[1:]
    import importlib.util

    if importlib.util.find_spec(f"stages.{stage}") is None:
        raise SystemExit(f"python -m stages: no stage '{stage}'")
    if "-h" in args or "--help" in args:
        run_here(stage, args)  # help needs no server, and starts none
    pin_math(args)  # before the server key: the server loads numpy/torch with this environment
    try:
        path = socket_path()
        conn = _connect_or_spawn(path) if path else None
    except OSError:  # e.g. a directory where the socket or lock belongs: run cold
        conn = None
    if conn is not None:
        _exit_like(_request(conn, stage, args))
    run_here(stage, args)


def pin_math(args: list[str]) -> None:
    """Pin the math kernels as the stage's params file says (``math.portable``).

    A params file this cannot read leaves the environment alone: the stage then reports the
    problem itself, in one line, before it loads numpy.
    """
    from nnpipe.core import portable
    from nnpipe.core.errors import PipelineError

    path = "params.yaml"
    for i, arg in enumerate(args):
        if arg == "--params" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--params="):
            path = arg.split("=", 1)[1]
    setting = _portable_setting(path)
    if setting is not None:
        try:
            portable.pin(setting)
        except PipelineError:
            pass  # e.g. a CPU without AVX2: the stage says so itself


def _portable_setting(path: str) -> bool | None:
    """``math.portable`` of ``path``, or None if it cannot be read as a boolean.

    Every stage launch reads it, so a file without aliases (nothing can expand) is read with
    PyYAML's C loader, ~30 ms faster than the stages' guarded ruamel.yaml reader
    (nnpipe.core.params), which reads anything else. The two agree on ``true``/``false``;
    where they could differ (``yes``), the stage's validation refuses the value anyway.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if len(text) < 1 << 20 and not any(isinstance(event, yaml.AliasEvent)
                                           for event in yaml.parse(text, Loader=loader)):
            raw = yaml.load(text, Loader=loader)
            section = raw.get("math") if isinstance(raw, dict) else None
            value = section.get("portable") if isinstance(section, dict) else None
            return value if isinstance(value, bool) else None
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    from nnpipe.core import params
    from nnpipe.core.errors import PipelineError

    try:
        return params.load(path, "math").math.portable
    except PipelineError:
        return None


def run_here(stage: str, args: list[str]) -> None:
    """Run ``stages.<stage>`` in this process, exactly as ``python -m stages.<stage>`` would."""
    import runpy

    sys.argv = [sys.argv[0], *args]
    runpy.run_module(f"stages.{stage}", run_name="__main__", alter_sys=True)


def warm_dir() -> str | None:
    """A directory only this user can use for sockets, or None (then every stage runs cold)."""
    base = os.environ.get(DIR_ENV) or f"/tmp/nnpipe-warm-{os.getuid()}"
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.stat(base)
    except OSError:
        return None
    return base if info.st_uid == os.getuid() and not info.st_mode & 0o077 else None


def socket_path() -> str | None:
    if os.environ.get(DISABLE_ENV) == "0" or not hasattr(os, "fork"):
        return None
    base = warm_dir()
    if base is None:
        return None
    source = hashlib.sha256()
    for name in ("launcher.py", "server.py"):
        with open(os.path.join(os.path.dirname(__file__), name), "rb") as handle:
            source.update(handle.read())
    env = sorted((k, v) for k, v in os.environ.items()
                 if not k.startswith(PER_INVOCATION_ENV) and k not in PER_INVOCATION_NAMES)
    key = json.dumps([sys.executable, sys.version, _interpreter_flags(), sys.path[1:], env,
                      process_context(), source.hexdigest()])
    path = os.path.join(base, hashlib.sha256(key.encode()).hexdigest()[:24] + ".sock")
    return path if len(path.encode()) < 100 else None  # AF_UNIX paths hold 108 bytes


def _interpreter_flags() -> list[str]:
    """This interpreter's -W/-X/-O/... options, for the server to start with the same ones."""
    import subprocess

    return subprocess._args_from_interpreter_flags()  # what multiprocessing uses too


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, "30")))
    except ValueError:
        return 30.0


def _connect(path: str) -> socket.socket | None:
    """A connection to a running, not stopped, server at ``path``; None if there is none."""
    if _server_stopped(path):
        raise OSError(f"warm server for {path} is stopped")  # run cold; leave it alone
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(_timeout())
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
        with open(path[:-5] + ".pid", encoding="ascii") as handle:
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


def _connect_or_spawn(path: str) -> socket.socket | None:
    """A connection to the warm server; if there is none, None, and the server is started as
    soon as the stage has parsed its arguments (so --help or a usage error starts none)."""
    conn = _connect(path)
    if conn is None:
        from nnpipe.core import cli

        cli.ON_START.append(lambda: _spawn_unless_running(path))
    return conn


def _spawn_unless_running(path: str) -> None:
    """Under the key's lock (waited for at most the timeout), start a server unless another
    client has meanwhile; never fails the stage."""
    import fcntl
    import time

    try:
        with open(path[:-5] + ".lock", "w") as lock:
            deadline = time.monotonic() + _timeout()
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return  # someone holds the lock too long: this stage stays cold
                    time.sleep(0.02)
            conn = _connect(path)  # another client may have started it meanwhile
            if conn is None:
                _spawn(path)
            else:
                conn.close()
    except OSError:
        pass


def _spawn(path: str) -> None:
    """Bind the socket here (no race: we hold the lock) and hand it to a detached server."""
    import subprocess

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(64)
        server = subprocess.Popen(
            [sys.executable, *_interpreter_flags(), "-m", "warmstart.launcher", "--serve",
             str(listener.fileno())],
            pass_fds=[listener.fileno()], start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(path[:-5] + ".pid", "w") as handle:  # the server removes it when it ends
            handle.write(str(server.pid))
    except OSError:
        pass  # no server: every stage still runs, cold
    finally:
        listener.close()


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _request(conn: socket.socket, stage: str, args: list[str]) -> int | None:
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
        status = _await_status(conn, fork)
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


def _await_status(conn: socket.socket, fork: int) -> bytes:
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
                if time.monotonic() - ended > _timeout():
                    return b""
            continue
        if not chunk:
            return b""
        data += chunk
    return data


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


def _exit_like(status: int | None) -> None:
    """Leave as the fork did: the same exit code, or death by the same signal."""
    if status is None:
        return
    if status < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.stdout.flush()
    os._exit(status & 0xFF if status >= 0 else 1)


def stop_servers() -> int:
    """SIGTERM every server in this user's warm directory (``python -m stages --stop``)."""
    base = warm_dir()
    stopped = 0
    for name in sorted(os.listdir(base)) if base else []:
        if name.endswith(".pid"):
            try:
                with open(os.path.join(base, name)) as handle:
                    pid = int(handle.read())
                if is_server(pid):
                    os.kill(pid, signal.SIGTERM)
                    stopped += 1
            except (OSError, ValueError):
                pass
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(base, name))
    print(f"stopped {stopped} warm server(s)")
    return 0


def is_server(pid: int) -> bool:
    """Whether ``pid`` is still a warm server (a stale pid file may name a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"\0warmstart.launcher\0--serve\0" in handle.read()
    except OSError:
        return False


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    from warmstart import server

    server.serve(int(sys.argv[2]), float(os.environ.get(IDLE_ENV, "900")))
