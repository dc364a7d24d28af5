"""warmstart: `python -m stages <stage>` runs the stage in a fork of a warm server, or in-process.

Each test drives the real launcher as a subprocess, on a probe stage written into a copy of
nnpipe/, stages/ and warmstart/, with its own warm directory so servers never mix between
tests. Where what the server preloads does not matter, a test starts the server itself with a
small preload (warm_util.start_test_server: ready at once); the tests of the real server
(torch, scikit-learn and matplotlib preloaded, seconds to start) are marked slow.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deps import ROOT
from warm_util import (alive, launch, launch_env, probe_repo_at, report, server_pids,
                       sleeping_stage, start_test_server, stop_servers, wait_gone, warm_run)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return probe_repo_at(tmp_path_factory.mktemp("warmrepo"))


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    """One warm directory (so one server) shared by the tests that need no special set-up."""
    warm_dir = tmp_path_factory.mktemp("w")
    yield warm_dir
    stop_servers(warm_dir)


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory, repo):
    """A warm directory with a server for ``repo`` that preloads numpy only."""
    warm_dir = tmp_path_factory.mktemp("q")
    start_test_server(repo, warm_dir, "numpy")
    yield warm_dir
    stop_servers(warm_dir)


def wait_for_pid_file(warm_dir: Path) -> None:
    deadline = time.monotonic() + 10
    while not server_pids(warm_dir):  # the launcher writes it as it starts the server
        assert time.monotonic() < deadline
        time.sleep(0.05)


# --- starting -------------------------------------------------------------------------------

def test_first_run_starts_a_server_and_runs_in_process(repo, own_dir):
    result = launch(repo, own_dir, "--exit", "0")
    assert result.returncode == 0, result.stderr
    assert report(result)["ppid"] == os.getpid()  # the launcher itself ran the stage
    wait_for_pid_file(own_dir)
    assert len(server_pids(own_dir)) == 1 and len(list(own_dir.glob("*.sock"))) == 1


def test_a_stage_that_does_not_begin_its_work_starts_no_server(repo, own_dir):
    """The server starts at the stage's first import of numpy, which the runner makes once it
    has read the params and pinned the kernels: --help or bad params start none (the launcher
    writes the pid file before the stage goes on)."""
    for argv, code in (["--help"], 0), (["--params", "missing.yaml"], 2):
        result = launch(repo, own_dir, *argv)
        assert result.returncode == code, argv
        assert server_pids(own_dir) == [] and not list(own_dir.glob("*.sock")), argv
    assert result.stderr == "probe: error: missing.yaml: file not found\n"
    assert launch(repo, own_dir).returncode == 0  # a stage that begins its work starts one
    wait_for_pid_file(own_dir)


@pytest.mark.slow
def test_disabled_runs_in_process_and_starts_no_server(repo, own_dir):
    result = launch(repo, own_dir, NNPIPE_WARM="0")
    assert report(result)["ppid"] == os.getpid()
    assert server_pids(own_dir) == []


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
    (["nosuch"], "python -m stages: no stage 'nosuch' (known: check_params, evaluate, fetch, "),
])
def test_launcher_usage_errors(argv, message):
    result = subprocess.run([sys.executable, "-m", "stages", *argv], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message) and "Traceback" not in result.stderr


@pytest.mark.parametrize("name, value, rule", [
    ("NNPIPE_WARM_TIMEOUT", "inf", "must be a number of seconds > 0"),
    ("NNPIPE_WARM_TIMEOUT", "nan", "must be a number of seconds > 0"),
    ("NNPIPE_WARM_TIMEOUT", "abc", "must be a number of seconds > 0"),
    ("NNPIPE_WARM_TIMEOUT", "-1", "must be a number of seconds > 0"),
    ("NNPIPE_WARM_TIMEOUT", "0", "must be a number of seconds > 0"),
    ("NNPIPE_WARM_TIMEOUT", "1e12", "must be at most 1e+09 seconds"),
    ("NNPIPE_WARM_IDLE", "abc", "must be a number of seconds > 0"),
    ("NNPIPE_WARM_IDLE", "", "must be a number of seconds > 0"),
    ("NNPIPE_WARM", "yes", "must be 1 (warm start) or 0 (every stage in its own process)"),
    ("NNPIPE_WARM", "", "must be 1 (warm start) or 0 (every stage in its own process)"),
    ("NNPIPE_WARM_DIR", "warm", "must be an absolute path"),
    ("NNPIPE_WARM_DIR", "/nonexistent/x", "must be in a directory that exists (no /nonexistent; "
     "only the last directory is ever made)"),
])
def test_a_bad_warm_variable_is_refused_naming_it(name, value, rule):
    from warmstart import settings

    with pytest.raises(settings.SettingError) as caught:
        settings.read({name: value})
    assert str(caught.value) == f"{name}={value!r} {rule}"


def test_warm_variables_read():
    from warmstart import settings

    assert settings.read({}) == (True, f"/tmp/nnpipe-warm-{os.getuid()}", 900.0, 30.0)
    assert settings.read({"NNPIPE_WARM": "0", "NNPIPE_WARM_DIR": "/w", "NNPIPE_WARM_IDLE": "1.5",
                          "NNPIPE_WARM_TIMEOUT": "2"}) == (False, "/w", 1.5, 2.0)


def test_the_launcher_refuses_a_bad_variable_in_one_line_and_leaves_no_file(repo, own_dir):
    result = launch(repo, own_dir, NNPIPE_WARM_IDLE="abc")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "stages: NNPIPE_WARM_IDLE='abc' must be a number of seconds > 0\n"
    assert not own_dir.exists()  # no socket, lock or pid file


def test_stop_refuses_a_bad_variable_too():
    result = subprocess.run([sys.executable, "-m", "stages", "--stop"], cwd=ROOT,
                            env={**os.environ, "NNPIPE_WARM_IDLE": "-5"},
                            capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (
        2, "stages: NNPIPE_WARM_IDLE='-5' must be a number of seconds > 0\n")


# --- a warm run is a plain process ----------------------------------------------------------

def test_a_warm_run_looks_like_a_plain_process(repo, quick_dir):
    cold = launch(repo, None, "--stdin", "--exit", "3", stdin="input\n", NNPIPE_WARM="0")
    warm = warm_run(repo, quick_dir, "--stdin", "--exit", "3", stdin="input\n")
    assert warm.returncode == cold.returncode == 3
    assert warm.stderr == cold.stderr == "probe: to stderr\n"
    ran_warm, ran_cold = report(warm), report(cold)
    assert ran_warm["ppid"] != ran_cold["ppid"]
    for key in ("cwd", "argv", "argv0", "env", "value", "stdin"):
        assert ran_warm[key] == ran_cold[key], key
    assert ran_warm["argv0"] == "__main__.py" and ran_warm["stdin"] == "input\n"


@pytest.mark.slow
def test_edited_code_runs_at_once(repo, quick_dir):
    before = report(warm_run(repo, quick_dir))
    (repo / "nnpipe/probe_value.py").write_text("VALUE = 2\n")
    try:
        after = report(warm_run(repo, quick_dir))
    finally:
        (repo / "nnpipe/probe_value.py").write_text("VALUE = 1\n")
    assert (before["value"], after["value"]) == (1, 2)
    assert before["ppid"] == after["ppid"]  # the same server, fresh nnpipe code


@pytest.mark.slow
def test_another_directory_runs_its_own_code(repo, quick_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(repo, other, ignore=shutil.ignore_patterns("__pycache__"))
    (other / "nnpipe/probe_value.py").write_text("VALUE = 7\n")
    ran_here, ran_there = report(warm_run(repo, quick_dir)), report(warm_run(other, quick_dir))
    assert (ran_here["value"], ran_there["value"]) == (1, 7)
    assert ran_there["cwd"] == str(other)


@pytest.mark.slow
def test_parallel_launches_are_served_side_by_side(repo, quick_dir):
    clients = [launch(repo, quick_dir, "--exit", str(code), wait=False) for code in (4, 5)]
    results = [(client.communicate(timeout=60), client.returncode) for client in clients]
    assert [code for _, code in results] == [4, 5]
    assert all(json.loads(out.splitlines()[0])["env"] == "probe" for (out, _), _ in results)
    assert all(json.loads(out.splitlines()[0])["ppid"] in server_pids(quick_dir)
               for (out, _), _ in results)


# --- the server runs the code on disk, or retires -------------------------------------------

@pytest.fixture
def site(tmp_path) -> Path:
    """A directory on PYTHONPATH with a third-party module, ``warmlib``, that servers preload."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site/warmlib.py").write_text("VALUE = 1\n")
    return tmp_path / "site"


def test_an_edited_preloaded_module_retires_the_server(repo, own_dir, site):
    server = start_test_server(repo, own_dir, "warmlib", PYTHONPATH=str(site))
    first = report(launch(repo, own_dir, "--lib", "warmlib", PYTHONPATH=str(site)))
    assert (first["ppid"], first["lib"]) == (server, 1)
    with open(site / "warmlib.py", "a") as handle:  # in place: the directory does not change
        handle.write("VALUE = 2  # patched\n")
    second = report(launch(repo, own_dir, "--lib", "warmlib", PYTHONPATH=str(site)))
    assert (second["ppid"], second["lib"]) == (os.getpid(), 2)  # cold, with the new code
    assert wait_gone(server, 10)


def test_a_snapshot_sees_an_edit_in_place_and_a_removed_module_file(tmp_path, monkeypatch):
    from warmstart.snapshot import Snapshot

    for name in ("snap_a", "snap_b"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    import snap_a, snap_b  # noqa: F401,E401

    snapshot = Snapshot()
    assert str(tmp_path / "snap_a.py") in snapshot.files and not snapshot.changed()
    with open(tmp_path / "snap_a.py", "a") as handle:
        handle.write("# a comment\n")
    assert snapshot.changed()
    snapshot = Snapshot()
    (tmp_path / "snap_b.py").unlink()
    assert snapshot.changed()


def test_the_snapshot_prints_what_a_check_costs(capsys):
    from warmstart import snapshot

    snapshot.main(preload=("json",), rounds=3)
    assert re.fullmatch(r"\d+ module files, \d+ sys.path entries: a check takes [\d.]+ ms "
                        r"\(median of 3\)\n", capsys.readouterr().out)


@pytest.mark.slow
def test_a_changed_sys_path_directory_retires_the_server(repo, own_dir, site):
    server = start_test_server(repo, own_dir, "warmlib", PYTHONPATH=str(site))
    assert report(launch(repo, own_dir, PYTHONPATH=str(site)))["ppid"] == server
    (site / "newly_installed.py").write_text("")  # as `pip install` would
    declined = launch(repo, own_dir, PYTHONPATH=str(site))
    assert declined.returncode == 0
    assert report(declined)["ppid"] == os.getpid()  # refused, so it ran in-process
    assert wait_gone(server, 10)


@pytest.mark.slow
def test_a_server_preloads_nothing_from_the_directory_that_started_it(repo, own_dir, site,
                                                                      tmp_path):
    starter = tmp_path / "starter"
    shutil.copytree(repo, starter, ignore=shutil.ignore_patterns("__pycache__"))
    (starter / "warmlib.py").write_text("VALUE = 99\n")
    server = start_test_server(starter, own_dir, "warmlib", PYTHONPATH=str(site))
    served = report(launch(repo, own_dir, "--lib", "warmlib", PYTHONPATH=str(site)))
    cold = report(launch(repo, None, "--lib", "warmlib", PYTHONPATH=str(site), NNPIPE_WARM="0"))
    assert (served["ppid"], served["lib"]) == (server, cold["lib"]) == (server, 1)


@pytest.mark.slow
@pytest.mark.parametrize("shadow", ["warmlib.py", "warmlib/__init__.py"])
def test_a_module_in_the_callers_directory_named_like_a_preloaded_one_runs_cold(
        repo, own_dir, site, tmp_path, shadow):
    caller = tmp_path / "caller"
    shutil.copytree(repo, caller, ignore=shutil.ignore_patterns("__pycache__"))
    (caller / shadow).parent.mkdir(exist_ok=True)
    (caller / shadow).write_text("VALUE = 99\n")
    server = start_test_server(repo, own_dir, "warmlib", PYTHONPATH=str(site))
    assert report(launch(repo, own_dir, PYTHONPATH=str(site)))["ppid"] == server
    ran = report(launch(caller, own_dir, "--lib", "warmlib", PYTHONPATH=str(site)))
    assert (ran["ppid"], ran["lib"]) == (os.getpid(), 99)  # as a fresh process imports it
    assert alive(server)  # declined, not retired


# --- exit and killing -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_stage_killed_by_a_signal_kills_the_launcher_the_same_way(repo, quick_dir):
    result = launch(repo, quick_dir, "--signal")
    assert report(result)["ppid"] in server_pids(quick_dir)
    assert result.returncode == -signal.SIGKILL


@pytest.mark.parametrize("signum", [signal.SIGKILL,
                                    pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_killing_the_launcher_kills_the_stage(repo, quick_dir, tmp_path, signum):
    pid_file = tmp_path / "stage.pid"
    client = launch(repo, quick_dir, "--sleep", str(pid_file), wait=False)
    stage_pid = sleeping_stage(pid_file, client)
    assert stage_pid != client.pid  # it runs in a fork of the server
    client.send_signal(signum)
    client.communicate()
    assert client.returncode == -signum
    assert wait_gone(stage_pid, 10)


PARENT = ("import subprocess, sys, time\n"  # a parent such as dvc: starts the launcher, waits
          "launcher = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
          "print(launcher.pid, flush=True)\n"
          "launcher.wait()\n")


@pytest.mark.parametrize("warm", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_killing_the_launchers_parent_leaves_the_stage_running_as_a_plain_process(
        repo, quick_dir, tmp_path, warm):
    """SIGKILL of `dvc` alone: its child, the launcher, runs on, warm or cold, as any process
    does; ending the launcher then ends its fork."""
    pid_file = tmp_path / "stage.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, sys.executable, "-m", "stages", "probe", "--sleep",
         str(pid_file)], cwd=repo, stdout=subprocess.PIPE, text=True,
        env=launch_env(quick_dir, **({} if warm else {"NNPIPE_WARM": "0"})))
    launcher = int(parent.stdout.readline())
    try:
        stage = sleeping_stage(pid_file, parent)
        assert (stage != launcher) == warm
        parent.kill()
        parent.wait()
        time.sleep(0.5)
        assert alive(launcher) and alive(stage)
    finally:
        os.kill(launcher, signal.SIGKILL)
    assert wait_gone(stage, 10)


# --- lifetime -------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_idle_server_exits_and_cleans_up(repo, own_dir):
    server = start_test_server(repo, own_dir, idle="1")
    assert wait_gone(server, 15)
    assert list(own_dir.glob("*.sock")) == [] and list(own_dir.glob("*.pid")) == []


# --- no import cycle ------------------------------------------------------------------------

def module_imports(package_dirs: list[Path]) -> dict[str, set[str]]:
    """For each module under ``package_dirs``: the modules of those packages it imports
    (anywhere in its body); importing ``a.b`` counts as importing the package ``a`` too."""
    modules = {}
    for package in package_dirs:
        for path in package.rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
                found.add(node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_module_of_warmstart_or_nnpipe_imports_one_that_imports_it_back():
    graph = module_imports([ROOT / "warmstart", ROOT / "nnpipe"])
    assert len(graph) > 20 and "warmstart.launcher" in graph and "nnpipe.core.cli" in graph

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(nxt == goal or (nxt not in seen and not seen.add(nxt)
                                   and reaches(nxt, goal, seen)) for nxt in graph[start])

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert cycles == []
    assert not any(m.startswith("warmstart") for name, deps in graph.items()
                   if name.startswith("nnpipe") for m in deps)  # the library knows no launcher


# --- the real server (slow: it imports torch, scikit-learn and matplotlib) -----------------

@pytest.mark.slow
def test_the_server_has_the_heavy_libraries_loaded(repo, shared_dir):
    served = report(warm_run(repo, shared_dir))
    assert alive(served["ppid"])
    maps = Path(f"/proc/{served['ppid']}/maps").read_text()
    assert "libtorch" in maps and "sklearn" in maps and "matplotlib" in maps


@pytest.mark.slow
def test_interpreter_options_get_a_server_started_with_them(repo, shared_dir):
    plain = report(warm_run(repo, shared_dir))
    strict = report(warm_run(repo, shared_dir, python=("-W", "error::DeprecationWarning")))
    assert strict["ppid"] != plain["ppid"]
    assert (plain["warnoptions"], strict["warnoptions"]) == ([], ["error::DeprecationWarning"])


@pytest.mark.slow
def test_a_retired_server_is_replaced(repo, own_dir, tmp_path):
    extra = tmp_path / "site"
    extra.mkdir()
    first = report(warm_run(repo, own_dir, PYTHONPATH=str(extra)))
    (extra / "newly_installed.py").write_text("")
    assert report(launch(repo, own_dir, PYTHONPATH=str(extra)))["ppid"] == os.getpid()
    assert wait_gone(first["ppid"], 10)
    assert report(warm_run(repo, own_dir, PYTHONPATH=str(extra)))["ppid"] != first["ppid"]


@pytest.mark.slow
def test_stop_ends_every_server(repo, own_dir):
    served = report(warm_run(repo, own_dir))
    result = subprocess.run([sys.executable, "-m", "stages", "--stop"], cwd=repo,
                            env={**os.environ, "NNPIPE_WARM_DIR": str(own_dir)},
                            capture_output=True, text=True)
    assert result.stdout == "stopped 1 warm server(s)\n"
    assert wait_gone(served["ppid"], 15)
