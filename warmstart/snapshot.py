"""Whether the code a warm server has loaded is still the code on disk.

Taken once the server has preloaded its libraries: the mtime of each directory on
``sys.path`` (installing or removing a package changes one) and the device, inode, size, mtime
and ctime of the file of every module loaded (an edit in place changes them, a reinstall
gives a new inode). The server checks it before serving each request, and retires when it
has changed: its forks would run the old code, a fresh process the new.

``python -m warmstart.snapshot`` preloads what the server does and prints what a check costs.
"""
from __future__ import annotations

import os
import sys


class Snapshot:
    def __init__(self) -> None:
        self.dirs = _dir_state()
        self.files = sorted({path for path in (getattr(module, "__file__", None)
                                               for module in list(sys.modules.values()))
                             if isinstance(path, str) and os.path.isfile(path)})
        self.state = _file_state(self.files)
        # what a module of the caller's directory must not shadow (nnpipe, stages and this
        # package come from the caller's directory in a fork too)
        self.top_level = frozenset(name.partition(".")[0] for name in sys.modules) - {
            "__main__", "nnpipe", "stages", "warmstart"}

    def changed(self) -> bool:
        return _dir_state() != self.dirs or _file_state(self.files) != self.state


def _dir_state() -> list:
    state = []
    for entry in sys.path[1:]:
        try:
            state.append((entry, os.stat(entry).st_mtime_ns))
        except OSError:
            state.append((entry, None))
    return state


def _file_state(files: list[str]) -> list | None:
    """None if a file has gone."""
    try:
        return [(s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
                for s in map(os.stat, files)]
    except OSError:
        return None


def main(preload: tuple[str, ...] | None = None, rounds: int = 21) -> None:
    import importlib
    import statistics
    import time

    from warmstart.protocol import PRELOAD

    for name in PRELOAD if preload is None else preload:
        importlib.import_module(name)
    snapshot = Snapshot()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        assert not snapshot.changed()
        times.append(time.perf_counter() - start)
    print(f"{len(snapshot.files)} module files, {len(snapshot.dirs)} sys.path entries: "
          f"a check takes {1000 * statistics.median(times):.1f} ms (median of {rounds})")


if __name__ == "__main__":
    main()
