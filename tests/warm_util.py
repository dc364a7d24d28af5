"""Start, find and stop the warm servers (warmstart) a test uses, and launch a probe stage on them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def server_pids(warm_dir: Path) -> list[int]:
    pids = []
    for pid_file in Path(warm_dir).glob("*.pid"):
        try:
            pids.append(int(pid_file.read_text()))
        except (OSError, ValueError):
            pass  # being written or removed
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_servers(warm_dir: Path) -> None:
    """SIGTERM each server (it waits for its running stages), then SIGKILL what is left."""
    from warmstart.protocol import is_server

    pids = [pid for pid in server_pids(warm_dir) if is_server(pid) or _is_test_server(pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in pids:
        if not wait_gone(pid, 30):
            os.kill(pid, signal.SIGKILL)


def forks(warm_dir: Path) -> list[int]:
    """pids of the stage processes the servers are running now."""
    import psutil

    found = []
    for pid in server_pids(warm_dir):
        try:
            found += [child.pid for child in psutil.Process(pid).children()]
        except psutil.NoSuchProcess:
            pass
    return found


# --- a probe stage and how to launch it (tests/test_warm*.py) ---------------------------

PROBE = '''"""A stage that reports where and how it ran."""
import json, os, signal, sys, time

import numpy  # as every stage's imports do, after the runner pinned the kernels

from nnpipe import probe_value

PARAMS = ()


def add_arguments(parser):
    for flag in ("--lib", "--sleep", "--nap"):
        parser.add_argument(flag)
    parser.add_argument("--exit", type=int, default=0)
    for flag in ("--stdin", "--context", "--rc", "--signal"):
        parser.add_argument(flag, action="store_true")


def run(args, p):
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                      "argv": sys.argv[1:], "argv0": os.path.basename(sys.argv[0]),
                      "env": os.environ.get("PROBE_ENV"), "value": probe_value.VALUE,
                      "warnoptions": sys.warnoptions,
                      "lib": __import__(args.lib).VALUE if args.lib else None,
                      "stdin": sys.stdin.read() if args.stdin else None}))
    if args.context:  # what the computing process runs under (--rc: matplotlib's too)
        stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        mask = os.umask(0); os.umask(mask)
        rc = __import__("matplotlib").rcParams if args.rc else {}
        print(json.dumps({"umask": mask, "nice": int(stat[16]),
                          "limits": open("/proc/self/limits").read(),
                          "affinity": sorted(os.sched_getaffinity(0)),
                          "linewidth": rc.get("lines.linewidth"),
                          "x86_v4": numpy._core._multiarray_umath.__cpu_features__.get("X86_V4")}))
    print("probe: to stderr", file=sys.stderr)
    sys.stdout.flush()
    if args.sleep:
        with open(args.sleep, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(120)
    if args.nap:  # a short stage: writes its pid, sleeps 2 s, ends well
        with open(args.nap, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(2)
    if args.signal:
        os.kill(os.getpid(), signal.SIGKILL)
    raise SystemExit(args.exit)
'''


def sleeping_stage(pid_file: Path, client: subprocess.Popen, timeout: float = 60) -> int:
    """The pid the probe's ``--sleep`` wrote to ``pid_file``, once it has (the client running)."""
    deadline = time.monotonic() + timeout
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.05)
    return int(pid_file.read_text())


def probe_repo_at(root: Path) -> Path:
    """nnpipe/, stages/ and warmstart/ plus the probe stage, in ``root``."""
    import shutil

    from deps import ROOT

    for package in ("nnpipe", "stages", "warmstart"):
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "stages/probe.py").write_text(PROBE)
    (root / "nnpipe/probe_value.py").write_text("VALUE = 1\n")
    (root / "params.yaml").write_text("math:\n  portable: false\n")
    return root


def launch_env(warm_dir: Path | None, **env: str) -> dict[str, str]:
    """The session's environment as its caller gave it (before conftest pinned the math
    kernels), so a test can add any variable without conflicting with the pinned ones."""
    from env_util import CALLER_ENV

    full_env = {**CALLER_ENV, "NNPIPE_WARM_IDLE": os.environ.get("NNPIPE_WARM_IDLE", "300"),
                "PROBE_ENV": "probe", **env}
    if warm_dir is not None:
        full_env["NNPIPE_WARM_DIR"] = str(warm_dir)
    return full_env


def launch(repo: Path, warm_dir: Path | None, *args: str, wait: bool = True, stdin: str = "",
           python: tuple[str, ...] = (), preexec=None, **env: str):
    """``python -m stages probe ARGS`` in ``repo``; ``preexec`` runs in the launcher first."""
    full_env = launch_env(warm_dir, **env)
    command = [sys.executable, *python, "-m", "stages", "probe", *args]
    if not wait:
        return subprocess.Popen(command, cwd=repo, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=preexec)
    return subprocess.run(command, cwd=repo, env=full_env, input=stdin, capture_output=True,
                          text=True, timeout=120, preexec_fn=preexec)


def report(result) -> dict:
    return json.loads(result.stdout.splitlines()[0])


def context(result) -> dict:
    """The --context line of a probe run."""
    return json.loads(result.stdout.splitlines()[1])


def warm_run(repo: Path, warm_dir: Path, *args: str, **kwargs):
    """Run until a run is served by a server (the first run of a key starts it, runs cold)."""
    for _ in range(3):
        result = launch(repo, warm_dir, *args, **kwargs)
        if report(result)["ppid"] in server_pids(warm_dir):
            return result
    raise AssertionError(f"never served warm: {result.stdout} {result.stderr}")


# --- a server that preloads only what a test says: ready in a fraction of a second ---------

TEST_SERVER = """# warm_util test server
import os, sys
sys.path[0] = os.getcwd()  # as in python -m warmstart.server
from warmstart import protocol, server
protocol.PRELOAD = tuple(sys.argv[3:])
server.main(sys.argv[1:3])
"""


def key_path(repo: Path, warm_dir: Path, suffix: str = ".sock", **env: str) -> Path:
    """The socket (".sock"), lock or pid path the launcher in ``repo`` would use."""
    code = ("from warmstart import key, settings; "
            "print(key.for_caller(settings.read().dir).path)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=launch_env(warm_dir, **env),
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out[:-len(".sock")] + suffix)


def start_test_server(repo: Path, warm_dir: Path, *preload: str, idle: str = "300",
                      **env: str) -> int:
    """A warm server (warmstart.server) at the key ``launch(repo, warm_dir, **env)`` uses, started
    from ``repo`` as the launcher would, but preloading only ``preload``; its pid."""
    import socket

    Path(warm_dir).mkdir(mode=0o700, exist_ok=True)
    path = key_path(repo, warm_dir, **env)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    fd = listener.fileno()
    server = subprocess.Popen([sys.executable, "-c", TEST_SERVER, str(fd), idle, *preload],
                              cwd=repo, env=launch_env(warm_dir, **env), pass_fds=[fd],
                              start_new_session=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()
    path.with_suffix(".pid").write_text(str(server.pid))
    return server.pid


def _is_test_server(pid: int) -> bool:
    try:
        return b"# warm_util test server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
