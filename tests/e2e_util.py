"""Helpers for tests that drive the real `dvc` CLI in a temporary copy of the repository."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from deps import ROOT


def run(cwd, *args, check=True):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NNPIPE_DEBUG", None)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


CHECK = {"check_params"}  # depends on params.yaml's bytes: any edit of it re-runs the check


def status(path) -> set[str]:
    """The stages `dvc status` lists, from DVC's Python API: the same answer as the CLI,
    without a process per call."""
    import contextlib

    from dvc.repo import Repo

    with contextlib.chdir(path), Repo(".") as repo:
        return set(repo.status())


def restore(path) -> None:
    """The committed workspace again. After a failed ``dvc exp run -S``, DVC leaves the -S
    values in params.yaml with an index entry that git trusts as unchanged (same size and
    time), so the next run would carry them: the index is read afresh from HEAD first."""
    run(path, "git", "read-tree", "HEAD")
    run(path, "git", "checkout", "--", ".")
    run(path, "dvc", "checkout", "--quiet")


def copy_repo(target) -> None:
    """Tracked and untracked-but-not-ignored files, as a fresh clone plus the work tree."""
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard", "-z").stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    run(target, "git", "init", "-q", "-b", "main")
    run(target, "git", "config", "user.name", "nnpipe tests")
    run(target, "git", "config", "user.email", "tests@nnpipe.invalid")
    run(target, "git", "add", "-A")
    run(target, "git", "commit", "-qm", "copy")


def terminal(cwd, argv: list[str], columns: int, **env: str) -> list[str]:
    """Run ``argv`` on a pseudo-terminal ``columns`` wide; its lines as that terminal shows
    them (escape codes removed, each cut at ``columns``, as `less -S` shows a wide page)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "COLUMNS": str(columns), **env})
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0, output.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", output.decode(errors="replace"))
    return [line[:columns] for line in text.replace("\r", "").splitlines()]
