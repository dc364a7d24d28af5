"""Find and stop the warm servers (nnpipe.warm) that a test started, by their pid files."""
from __future__ import annotations

import os
import signal
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
    from nnpipe.warm import is_server

    pids = [pid for pid in server_pids(warm_dir) if is_server(pid)]
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
