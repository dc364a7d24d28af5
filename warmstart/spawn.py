"""Starting a warm server: once a stage begins its work, under the key's lock, detached.

The runner reads the params and pins the math kernels before it imports the stage, whose
imports load numpy; so the launcher starts the server at the first import of numpy (a finder on
``sys.meta_path``, removed as it fires), and ``--help`` or a bad params file start none. The stage goes on in-process while the server warms up on another core.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys

from warmstart import client
from warmstart.key import Key
from warmstart.protocol import SERVER_MODULE

TRIGGER = "numpy"  # the first import that tells a stage has begun its work


class StartOnImport:
    """A ``sys.meta_path`` finder that calls ``start`` (once) when ``name`` is first imported,
    and finds nothing itself: the import goes on as usual."""

    def __init__(self, name: str, start) -> None:
        self.name, self.start = name, start

    def find_spec(self, fullname: str, path=None, target=None) -> None:
        if fullname == self.name:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            with contextlib.suppress(Exception):  # a server is a bonus: never fail the stage
                self.start()
        return None


def start_when_stage_begins(key: Key, idle_s: float, timeout_s: float) -> None:
    sys.meta_path.insert(0, StartOnImport(
        TRIGGER, lambda: start_unless_running(key, idle_s, timeout_s)))


def start_unless_running(key: Key, idle_s: float, timeout_s: float) -> None:
    """Under the key's lock (waited for at most ``timeout_s``), start a server unless another
    client has meanwhile; never fails the stage."""
    import fcntl
    import time

    try:
        with open(key.sibling(".lock"), "w") as lock:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return  # someone holds the lock too long: this stage stays cold
                    time.sleep(0.02)
            conn = client.connect(key.path, timeout_s)  # another may have started it meanwhile
            if conn is None:
                _spawn(key, idle_s)
            else:
                conn.close()
    except OSError:
        pass


def _spawn(key: Key, idle_s: float) -> None:
    """Bind the socket here (no race: we hold the lock) and hand it to a detached server."""
    import subprocess

    with contextlib.suppress(FileNotFoundError):
        os.unlink(key.path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(key.path)
        listener.listen(64)
        server = subprocess.Popen(
            [sys.executable, *key.flags, "-m", SERVER_MODULE, str(listener.fileno()),
             repr(idle_s)],
            pass_fds=[listener.fileno()], env=key.env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(key.sibling(".pid"), "w") as handle:  # the server removes it when it ends
            handle.write(str(server.pid))
    except OSError:
        pass  # no server: every stage still runs, cold
    finally:
        listener.close()
