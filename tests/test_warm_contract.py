"""The warm contract: a warm stage is indistinguishable from a cold one, or steps aside.

Each test drives the real launcher on the probe stage (tests/warm_util.py), which reports the
process that computes: its parent (the server, when served warm), umask, nice, limits and CPU
affinity as /proc shows them, matplotlib's rc and NumPy's CPU features. Tests of what the
preloaded libraries see start the real server (slow); the others a server that preloads only
numpy (warm_util.start_test_server).
"""
from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from env_util import CALLER_ENV
from warm_util import (alive, context, forks, key_path, launch, probe_repo_at, report,
                       server_pids, sleeping_stage, start_test_server, stop_servers, wait_gone,
                       warm_run)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return probe_repo_at(tmp_path_factory.mktemp("contractrepo"))


def served_warm(result, warm_dir: Path) -> bool:
    return report(result)["ppid"] in server_pids(warm_dir)


@pytest.mark.slow
def test_umask_is_the_callers(repo, own_dir):
    start_test_server(repo, own_dir, "numpy")
    result = launch(repo, own_dir, "--context", preexec=lambda: os.umask(0o027))
    assert served_warm(result, own_dir)
    assert context(result)["umask"] == 0o027


@pytest.mark.slow
@pytest.mark.parametrize("what", ["rlimit", "nice"])
def test_a_caller_under_other_limits_computes_under_them(repo, own_dir, what):
    """Its own server, started under those limits (or a cold run): never the usual one."""
    usual = report(warm_run(repo, own_dir))["ppid"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 512) - 1

    def change():
        if what == "rlimit":
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        else:
            os.nice(3)
    first = launch(repo, own_dir, "--context", preexec=change)
    served = warm_run(repo, own_dir, "--context", preexec=change)
    for result in (first, served):
        seen = context(result)
        if what == "rlimit":
            assert f"Max open files            {lowered}" in seen["limits"]
        else:
            assert seen["nice"] == os.getpriority(os.PRIO_PROCESS, 0) + 3
    assert report(first)["ppid"] != usual and report(served)["ppid"] != usual
    assert report(warm_run(repo, own_dir))["ppid"] == usual


@pytest.mark.slow
def test_a_server_declines_a_caller_whose_context_is_not_its_own(repo, own_dir):
    """The key already separates contexts; the server checks again (a shared key file, a
    race): a request with another context runs cold."""
    from warmstart import protocol

    start_test_server(repo, own_dir)
    code = ("from warmstart import client, key, protocol, settings; "
            "conn = client.connect(key.for_caller(settings.read().dir).path, 30); "
            "ctx = protocol.process_context; "
            "client.process_context = lambda: {**ctx(), 'nice': 99}; "
            "print(conn is not None, client.request(conn, 'probe', [], 30))")
    env = {**CALLER_ENV, "PROBE_ENV": "probe", "NNPIPE_WARM_DIR": str(own_dir),
           "NNPIPE_WARM_IDLE": os.environ.get("NNPIPE_WARM_IDLE", "300")}
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True None", result.stderr
    assert protocol.DECLINED == b"D"


@pytest.mark.slow
def test_matplotlibrc_of_the_caller_counts_and_never_leaks_into_the_server(repo, own_dir,
                                                                           tmp_path):
    styled = tmp_path / "styled"
    shutil.copytree(repo, styled, ignore=shutil.ignore_patterns("__pycache__"))
    (styled / "matplotlibrc").write_text("lines.linewidth: 7\n")
    first = launch(styled, own_dir, "--context", "--rc")  # starts the server, from this directory
    assert context(first)["linewidth"] == 7.0
    again = launch(styled, own_dir, "--context", "--rc")
    assert not served_warm(again, own_dir) and context(again)["linewidth"] == 7.0
    plain = warm_run(repo, own_dir, "--context", "--rc")
    cold = launch(repo, None, "--context", "--rc", NNPIPE_WARM="0")
    assert context(plain)["linewidth"] == context(cold)["linewidth"] == 1.5


@pytest.mark.slow
def test_numpy_variables_get_their_own_server_and_cold_results(repo, own_dir):
    npy = {"NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR"}
    plain = warm_run(repo, own_dir, "--context")
    warm = warm_run(repo, own_dir, "--context", **npy)
    cold = launch(repo, None, "--context", NNPIPE_WARM="0", **npy)
    assert report(warm)["ppid"] != report(plain)["ppid"]
    assert context(warm)["x86_v4"] == context(cold)["x86_v4"]
    assert context(warm)["x86_v4"] in (False, None)


@pytest.mark.slow
def test_per_invocation_variables_share_a_server(repo, own_dir):
    server = start_test_server(repo, own_dir, DVC_STAGE="a", PWD="/x")
    assert report(launch(repo, own_dir, DVC_STAGE="b", PWD="/y"))["ppid"] == server
    assert report(launch(repo, own_dir, OTHER="1"))["ppid"] != server  # a new key


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".sock", ".lock"])
def test_a_directory_at_the_socket_or_lock_path_runs_cold(repo, own_dir, suffix):
    own_dir.mkdir(mode=0o700)
    key_path(repo, own_dir, suffix).mkdir()
    result = launch(repo, own_dir, "--exit", "3")
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert report(result)["ppid"] == os.getpid()
    assert result.stderr == "probe: to stderr\n"


@pytest.mark.slow
def test_a_stopped_server_is_passed_by(repo, own_dir):
    server = start_test_server(repo, own_dir)
    os.kill(server, signal.SIGSTOP)
    try:
        start = time.monotonic()
        result = launch(repo, own_dir, "--exit", "0")
        assert result.returncode == 0 and report(result)["ppid"] == os.getpid()
        assert time.monotonic() - start < 20
    finally:
        os.kill(server, signal.SIGCONT)


@pytest.mark.slow
def test_a_server_stopped_mid_stage_does_not_hang_its_client(repo, own_dir, tmp_path):
    server = start_test_server(repo, own_dir, "numpy")
    pid_file = tmp_path / "stage.pid"
    client = launch(repo, own_dir, "--nap", str(pid_file), wait=False, NNPIPE_WARM_TIMEOUT="2")
    fork = sleeping_stage(pid_file, client)
    pid_file.unlink()
    os.kill(server, signal.SIGSTOP)  # the fork ends, but nobody reports it
    try:
        _, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert "running it cold" in err
        assert int(pid_file.read_text()) == client.pid  # the stage ran again, cold
        assert fork != client.pid
    finally:
        os.kill(server, signal.SIGCONT)


@pytest.mark.slow
def test_a_held_lock_times_out_and_runs_cold(repo, own_dir):
    own_dir.mkdir(mode=0o700)
    with open(key_path(repo, own_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        result = launch(repo, own_dir, "--exit", "0", NNPIPE_WARM_TIMEOUT="1")
        elapsed = time.monotonic() - start
    assert result.returncode == 0 and report(result)["ppid"] == os.getpid()
    assert elapsed < 15
    assert server_pids(own_dir) == []


@pytest.mark.slow
def test_a_fork_dies_with_its_server_and_the_stage_reruns_cold(repo, own_dir, tmp_path):
    server = start_test_server(repo, own_dir, "numpy")
    pid_file = tmp_path / "stage.pid"
    client = launch(repo, own_dir, "--sleep", str(pid_file), wait=False)
    fork = sleeping_stage(pid_file, client)
    assert fork in forks(own_dir)
    pid_file.unlink()
    os.kill(server, signal.SIGKILL)
    assert wait_gone(fork, 10)  # PR_SET_PDEATHSIG: no orphan left to write later
    assert sleeping_stage(pid_file, client) == client.pid  # the cold re-run has started
    client.kill()
    _, err = client.communicate()
    assert "the warm server stopped answering" in err and "running it cold" in err


@pytest.mark.parametrize("warm", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_ctrl_c_ends_the_launcher_by_sigint_warm_or_cold(repo, own_dir, tmp_path, warm):
    if warm:
        start_test_server(repo, own_dir, "numpy")
    pid_file = tmp_path / "stage.pid"
    client = launch(repo, own_dir, "--sleep", str(pid_file), wait=False,
                    **({} if warm else {"NNPIPE_WARM": "0"}))
    stage = sleeping_stage(pid_file, client)
    assert (stage != client.pid) == warm
    client.send_signal(signal.SIGINT)
    client.communicate(timeout=30)
    assert client.returncode == -signal.SIGINT
    assert not alive(stage)


@pytest.mark.parametrize("text, expected", [
    ("math:\n  portable: true  # 2*N*C\n", True),
    ("math:\n  portable: false\n", False),
    ("math:\n  portable: 'true'\n", None),
    ("math:\n  portable: yes\n", None),  # YAML 1.2, as DVC reads it: a string, refused later
    ("a: &x [1, 2]\nb: *x\nmath:\n  portable: true\n", "YAML aliases"),
    ("math: [\n", "not valid YAML"),
])
def test_the_runner_reads_math_portable_with_the_params_reader(tmp_path, text, expected):
    """The launcher pins by the same reading (a PipelineError there: it pins nothing)."""
    from nnpipe.core.errors import PipelineError
    from stages.__main__ import portable_setting

    path = tmp_path / "params.yaml"
    path.write_text(text)
    if isinstance(expected, str):
        with pytest.raises(PipelineError, match=expected):
            portable_setting(str(path))
    else:
        assert portable_setting(str(path)) is expected


@pytest.mark.slow
def test_preload_is_what_the_stages_import_now():
    """Re-records PRELOAD: every stage of dvc.yaml run cold (~1 min)."""
    from warmstart import protocol, record

    assert tuple(record.record()) == protocol.PRELOAD, (
        f"{protocol.PRELOAD_FILE} is stale: run `{record.COMMAND}` and commit it")


def test_preload_keeps_the_third_party_modules_the_ones_before_do_not_import():
    from warmstart.record import reduce

    assert reduce(["json", "nnpipe.core", "org.python.core", "numpy", "numpy.linalg", "yaml",
                   "pydantic", "pydantic._internal", "pydantic.main"]) == [
        "pydantic", "yaml", "numpy", "pydantic.main"]  # by depth, the later first
