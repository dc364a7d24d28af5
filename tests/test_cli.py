"""nnpipe.core.cli: a stage's failures as one line and exit 2, the environment's included."""
from __future__ import annotations

import copy
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deps import ROOT
from nnpipe.core import cli
from nnpipe.core.errors import PipelineError


def run_stage(body) -> tuple[int, str]:
    """Run ``body`` inside cli.stage("demo"): (exit code, stderr)."""
    import contextlib
    import io

    err, code = io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            with cli.stage("demo"):
                body()
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("NNPIPE_DEBUG", raising=False)


def _raise(exc: BaseException):
    def body() -> None:
        raise exc
    return body


def test_a_pipeline_error_is_one_line_and_exit_2():
    assert run_stage(_raise(PipelineError("x.csv: bad\n  value"))) == \
        (2, "demo: error: x.csv: bad value\n")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS,
                                  errno.EACCES, errno.EPERM, errno.EIO])
def test_an_environmental_os_error_is_one_line_naming_the_file(code):
    exc = OSError(code, os.strerror(code), "/data/out.csv")
    assert run_stage(_raise(exc)) == (2, f"demo: error: /data/out.csv: {os.strerror(code)}\n")


def test_an_environmental_os_error_without_a_file_still_is_one_line():
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert run_stage(_raise(exc)) == (2, "demo: error: output: No space left on device\n")


@pytest.mark.parametrize("exc", [OSError(errno.EBADF, "Bad file descriptor"), RuntimeError("bug")])
def test_other_errors_keep_their_traceback(exc):
    with pytest.raises(type(exc)):
        run_stage(_raise(exc))


def test_debug_env_shows_the_environmental_error(monkeypatch):
    monkeypatch.setenv("NNPIPE_DEBUG", "1")
    with pytest.raises(OSError, match="No space"):
        run_stage(_raise(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "f")))


# --- a stage really running out of room (subprocesses) ------------------------------------------

@pytest.fixture
def fetch_command(tmp_path) -> tuple[list[str], Path]:
    """``python -m stages fetch`` (NNPIPE_WARM=0: it runs in the limited process itself) on
    a ~70 kB spiral CSV, and its --out, holding a previous output."""
    from nnpipe import data
    from nnpipe.core import files

    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    spiral = params["spiral"]
    files.write_csv(str(tmp_path / "spiral.csv"), data.spiral_frame(
        spiral["samples_per_class"], spiral["classes"], spiral["noise"], params["seed"]))
    params["fetch"]["source"] = str(tmp_path / "spiral.csv")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "data" / "table.parquet"
    out.parent.mkdir()
    out.write_text("previous\n")
    return [sys.executable, "-m", "stages", "fetch", "--params", str(tmp_path / "params.yaml"),
            "--out", str(out), "--schema", str(tmp_path / "data" / "schema.json")], out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
    env.update(PYTHONDONTWRITEBYTECODE="1", NNPIPE_WARM="0")
    return env


def _limit_file_size() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.mark.slow
def test_a_stage_hitting_the_file_size_limit_is_one_line_and_keeps_the_previous_output(
        fetch_command):
    argv, out = fetch_command
    result = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=120, check=False, preexec_fn=_limit_file_size)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == f"fetch: error: {out}: cannot write (File too large)"
    assert "Traceback" not in result.stderr
    assert out.read_text() == "previous\n"
    assert os.listdir(out.parent) == ["table.parquet"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 kB tmpfs (root only: skipped otherwise), unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_stage_writing_to_a_full_disk_is_one_line_and_keeps_the_previous_output(
        fetch_command, tiny_tmpfs):
    argv, _ = fetch_command
    out = tiny_tmpfs / "table.parquet"
    out.write_text("previous\n")
    (tiny_tmpfs / "filler").write_bytes(b"\0" * 50_000)  # leaves less room than the ~26 kB table
    argv[argv.index("--out") + 1] = str(out)
    result = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == \
        f"fetch: error: {out}: cannot write (No space left on device)"
    assert "Traceback" not in result.stderr
    assert out.read_text() == "previous\n"
    assert sorted(os.listdir(tiny_tmpfs)) == ["filler", "table.parquet"]
