"""warmstart.launcher: `python -m stages <stage>` runs the stage in a fork of a warm server, or in-process.

Each test drives the real launcher as a subprocess, on a probe stage written into a copy of
nnpipe/ and stages/, with its own warm directory so servers never mix between tests.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deps import ROOT
from warm_util import (alive, launch, probe_repo_at, report, server_pids, sleeping_stage,
                       stop_servers, wait_gone, warm_run)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return probe_repo_at(tmp_path_factory.mktemp("warmrepo"))


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    """One warm directory (so one server) shared by the tests that need no special set-up."""
    warm_dir = tmp_path_factory.mktemp("w")
    yield warm_dir
    stop_servers(warm_dir)


@pytest.fixture
def own_dir(tmp_path):
    warm_dir = tmp_path / "w"
    yield warm_dir
    stop_servers(warm_dir)


def test_first_run_starts_a_server_and_runs_in_process(repo, own_dir):
    result = launch(repo, own_dir, "--exit", "0")
    assert result.returncode == 0, result.stderr
    assert report(result)["ppid"] == os.getpid()  # the launcher itself ran the stage
    deadline = time.monotonic() + 10
    while not server_pids(own_dir):  # the server writes its pid file as it starts
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(server_pids(own_dir)) == 1 and len(list(own_dir.glob("*.sock"))) == 1


def test_a_warm_run_looks_like_a_plain_process(repo, shared_dir):
    cold = launch(repo, None, "--stdin", "--exit", "3", stdin="input\n", NNPIPE_WARM="0")
    warm = warm_run(repo, shared_dir, "--stdin", "--exit", "3", stdin="input\n")
    assert warm.returncode == cold.returncode == 3
    assert warm.stderr == cold.stderr == "probe: to stderr\n"
    ran_warm, ran_cold = report(warm), report(cold)
    assert ran_warm["ppid"] != ran_cold["ppid"]
    for key in ("cwd", "argv", "argv0", "env", "value", "stdin"):
        assert ran_warm[key] == ran_cold[key], key
    assert ran_warm["argv0"] == "probe.py" and ran_warm["stdin"] == "input\n"


def test_interpreter_options_get_a_server_started_with_them(repo, shared_dir):
    plain = report(warm_run(repo, shared_dir))
    strict = report(warm_run(repo, shared_dir, python=("-W", "error::DeprecationWarning")))
    assert strict["ppid"] != plain["ppid"]
    assert (plain["warnoptions"], strict["warnoptions"]) == ([], ["error::DeprecationWarning"])


def test_disabled_runs_in_process_and_starts_no_server(repo, own_dir):
    result = launch(repo, own_dir, NNPIPE_WARM="0")
    assert report(result)["ppid"] == os.getpid()
    assert server_pids(own_dir) == []


def test_edited_code_runs_at_once(repo, shared_dir):
    before = report(warm_run(repo, shared_dir))
    (repo / "nnpipe/probe_value.py").write_text("VALUE = 2\n")
    try:
        after = report(warm_run(repo, shared_dir))
    finally:
        (repo / "nnpipe/probe_value.py").write_text("VALUE = 1\n")
    assert (before["value"], after["value"]) == (1, 2)
    assert before["ppid"] == after["ppid"]  # the same server, fresh nnpipe code


def test_another_directory_runs_its_own_code(repo, shared_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(repo, other, ignore=shutil.ignore_patterns("__pycache__"))
    (other / "nnpipe/probe_value.py").write_text("VALUE = 7\n")
    ran_here, ran_there = report(warm_run(repo, shared_dir)), report(warm_run(other, shared_dir))
    assert (ran_here["value"], ran_there["value"]) == (1, 7)
    assert ran_there["cwd"] == str(other)


def test_a_stage_killed_by_a_signal_kills_the_launcher_the_same_way(repo, shared_dir):
    warm_run(repo, shared_dir)
    result = launch(repo, shared_dir, "--signal")
    assert result.returncode == -signal.SIGKILL


def test_killing_the_launcher_kills_the_stage(repo, shared_dir, tmp_path):
    warm_run(repo, shared_dir)
    pid_file = tmp_path / "stage.pid"
    client = launch(repo, shared_dir, "--sleep", str(pid_file), wait=False)
    stage_pid = sleeping_stage(pid_file, client)
    assert stage_pid != client.pid  # it runs in a fork of the server
    client.kill()
    client.communicate()
    assert wait_gone(stage_pid, 10)


def test_parallel_launches_are_served_side_by_side(repo, shared_dir):
    warm_run(repo, shared_dir)
    clients = [launch(repo, shared_dir, "--exit", str(code), wait=False) for code in (4, 5)]
    results = [(client.communicate(timeout=60), client.returncode) for client in clients]
    assert [code for _, code in results] == [4, 5]
    assert all(json.loads(out.splitlines()[0])["env"] == "probe" for (out, _), _ in results)


def test_a_changed_sys_path_directory_retires_the_server(repo, own_dir, tmp_path):
    extra = tmp_path / "site"
    extra.mkdir()
    first = report(warm_run(repo, own_dir, PYTHONPATH=str(extra)))
    (extra / "newly_installed.py").write_text("")  # as `pip install` would
    declined = launch(repo, own_dir, PYTHONPATH=str(extra))
    assert declined.returncode == 0
    assert report(declined)["ppid"] == os.getpid()  # refused, so it ran in-process
    assert wait_gone(first["ppid"], 10)
    assert report(warm_run(repo, own_dir, PYTHONPATH=str(extra)))["ppid"] != first["ppid"]


def test_an_idle_server_exits_and_cleans_up(repo, own_dir):
    served = report(warm_run(repo, own_dir, NNPIPE_WARM_IDLE="1"))
    assert wait_gone(served["ppid"], 15)
    assert list(own_dir.glob("*.sock")) == [] and list(own_dir.glob("*.pid")) == []


def test_stop_ends_every_server(repo, own_dir):
    served = report(warm_run(repo, own_dir))
    result = subprocess.run([sys.executable, "-m", "stages", "--stop"], cwd=repo,
                            env={**os.environ, "NNPIPE_WARM_DIR": str(own_dir)},
                            capture_output=True, text=True)
    assert result.stdout == "stopped 1 warm server(s)\n"
    assert wait_gone(served["ppid"], 15)


def test_a_directory_others_can_write_is_not_used(repo, tmp_path):
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    result = launch(repo, shared)
    assert report(result)["ppid"] == os.getpid()
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    ([], "usage: python -m stages <stage>"), (["-x"], "usage: python -m stages <stage>"),
    (["no-such-stage!"], "usage: python -m stages <stage>"),
    (["nosuch"], "python -m stages: no stage 'nosuch'"),
])
def test_launcher_usage_errors(argv, message):
    result = subprocess.run([sys.executable, "-m", "stages", *argv], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(message) and "Traceback" not in result.stderr


def test_the_server_has_the_heavy_libraries_loaded(repo, shared_dir):
    served = report(warm_run(repo, shared_dir))
    assert alive(served["ppid"])
    maps = Path(f"/proc/{served['ppid']}/maps").read_text()
    assert "libtorch" in maps and "sklearn" in maps and "matplotlib" in maps
