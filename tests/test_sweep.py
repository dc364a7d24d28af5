"""nnpipe.sweep (issue 12): a grid of DVC experiments as Ray tasks, shared through git and DVC.

A copy of the repository pushes to a bare git remote and a local-directory DVC remote in a
temp dir (no network); sweeps run on a local Ray and on a two-node cluster simulated on this
machine (ray.cluster_utils.Cluster), each with no dashboard and at most 2 CPUs.
"""
from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deps import ROOT
from e2e_util import copy_repo, run

pytestmark = pytest.mark.e2e
ray = pytest.importorskip("ray")
GRID = ["-S", "train_torch_mlp.lr=0.001,0.01,0.02,-1", "-S", "train_torch_mlp.epochs=5"]
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def sweep(repo: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **RAY_ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "nnpipe.sweep", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)


def lines(result, pattern: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if re.search(pattern, line)]


@pytest.fixture(scope="module")
def remotes(tmp_path_factory) -> dict[str, Path]:
    """A working repo whose HEAD and outputs are on a bare git remote and a DVC remote."""
    tmp = tmp_path_factory.mktemp("sweep")
    paths = {"git": tmp / "remote.git", "dvc": tmp / "dvcstore", "work": tmp / "work"}
    run(tmp, "git", "init", "-q", "--bare", "-b", "main", str(paths["git"]))
    paths["work"].mkdir()
    copy_repo(paths["work"])
    work = paths["work"]
    run(work, "dvc", "remote", "add", "-d", "store", str(paths["dvc"]))
    run(work, "git", "commit", "-qam", "remotes")
    run(work, "git", "remote", "add", "origin", str(paths["git"]))
    run(work, "git", "push", "-q", "origin", "main")
    run(work, "dvc", "repro", "-q")
    run(work, "dvc", "push", "-q")
    return paths


@pytest.fixture(scope="module")
def local_sweep(remotes):
    return sweep(remotes["work"], *GRID, "--jobs", "2")


def test_each_trial_reports_and_an_invalid_one_fails_alone(local_sweep):
    result = local_sweep
    assert result.returncode == 1, result.stderr
    finished = lines(result, r"^sweep: \[\d/4\] sweep-")
    assert len(finished) == 4, result.stderr
    failed = lines(result, "FAILED")
    assert len(failed) == 1 and "train_torch_mlp.lr=-1" in failed[0]
    assert "train_torch_mlp.lr=-1.0 must be > 0" in failed[0] or "must be > 0" in failed[0]
    ok = [line for line in finished if "FAILED" not in line]
    assert all(re.search(r"torch_mlp\.test\.f1=0\.\d{4} in [\d.]+ s on node \w+", line)
               for line in ok), ok
    board = result.stderr.split("leaderboard by torch_mlp.test.f1:")[1].splitlines()
    values = [float(line.split()[2]) for line in board if re.match(r"sweep:\s+\d\.", line)]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert "Traceback" not in result.stderr


def test_a_fresh_clone_pulls_every_trial_with_params_and_metrics(local_sweep, remotes,
                                                                  tmp_path):
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(remotes["git"]), str(clone))
    run(clone, "dvc", "exp", "pull", "-A", "origin")
    shown = json.loads(run(clone, "dvc", "exp", "show", "--json", "-A").stdout)
    exps = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            params = rev["data"]["params"]["params.yaml"]["data"]["train_torch_mlp"]
            metrics = rev["data"]["metrics"]["reports/metrics.json"]["data"]
            exps[exp["name"]] = (params["lr"], metrics["torch_mlp"]["test"]["f1"])
    assert sorted(lr for lr, _ in exps.values()) == [0.001, 0.01, 0.02]
    assert all(0 <= f1 <= 1 for _, f1 in exps.values())
    assert all(name.startswith("sweep-") for name in exps)


def test_a_rerun_skips_the_trials_already_on_the_remote(local_sweep, remotes):
    again = sweep(remotes["work"], *GRID, "--jobs", "2")
    assert len(lines(again, r"^sweep: skip sweep-\w+-\w+ .*already on origin")) == 3, again.stderr
    assert len(lines(again, r"^sweep: \[\d/1\] .*FAILED")) == 1  # only the invalid one re-ran
    assert again.returncode == 1


def test_trials_run_on_both_nodes_of_a_cluster(remotes):
    from ray.cluster_utils import Cluster

    os.environ.update(RAY_ENV)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        result = sweep(remotes["work"], "-S", "train_torch_mlp.lr=0.003,0.004",
                       "-S", "train_torch_mlp.epochs=3", "--address", cluster.address)
    finally:
        cluster.shutdown()
    assert result.returncode == 0, result.stderr
    nodes = {re.search(r"on node (\w+)", line).group(1)
             for line in lines(result, r"^sweep: \[\d/2\]")}
    assert len(nodes) == 2, result.stderr


def test_a_trial_whose_worker_dies_is_retried(tmp_path, monkeypatch):
    from nnpipe import sweep_ray, sweep_trial

    marker = tmp_path / "died-once"

    def dies_once(spec):
        if not os.path.exists(spec["marker"]):
            open(spec["marker"], "w").close()
            os._exit(1)  # the worker process dies, as when its machine goes away
        return {"name": spec["name"], "overrides": [], "ok": True, "metrics": {},
                "node": "", "seconds": 0.0, "error": ""}

    monkeypatch.setattr(sweep_trial, "run_trial", dies_once)
    monkeypatch.setattr(os, "environ", {**os.environ, **RAY_ENV})
    seen = []
    results = sweep_ray.run([{"name": "t", "overrides": [], "marker": str(marker)}], None, 1,
                            lambda result, n: seen.append(n))
    assert [r["ok"] for r in results] == [True] and seen == [1] and marker.exists()


@pytest.mark.parametrize("change, message", [
    (("--git-remote", "nosuch"), "git remote 'nosuch' not found"),
    (("--dvc-remote", "nosuch"), "DVC remote 'nosuch' not found"),
    (("-S", "train_torch_mlp.lr=[0.1"), "-S: "),
    (("--jobs", "0"), "--jobs 0: must be at least 1"),
])
def test_setup_errors_are_one_line_exit_2(remotes, change, message):
    result = sweep(remotes["work"], "-S", "train_torch_mlp.lr=0.1", *change)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("sweep: error: ")
    assert message in result.stderr


def test_a_dirty_workspace_or_an_unpushed_head_is_refused(remotes):
    work = remotes["work"]
    params = work / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("seed: 1234", "seed: 4321"))
    try:
        dirty = sweep(work, "-S", "train_torch_mlp.lr=0.1")
        run(work, "git", "commit", "-qam", "not pushed")
        unpushed = sweep(work, "-S", "train_torch_mlp.lr=0.1")
    finally:
        run(work, "git", "reset", "-q", "--hard", "origin/main")
    assert dirty.returncode == unpushed.returncode == 2
    assert "uncommitted changes" in dirty.stderr
    assert "is not on git remote 'origin': git push origin HEAD first" in unpushed.stderr


def test_ctrl_c_stops_the_sweep_and_the_ray_it_started(remotes):
    def ray_processes() -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"raylet" in cmdline or b"gcs_server" in cmdline:
                found.add(int(entry.name))
        return found

    before = ray_processes()
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "nnpipe.sweep", "-S",
                             "train_torch_mlp.lr=0.0051,0.0052", "--jobs", "1"],
                            cwd=remotes["work"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ray_processes() - before:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(3)  # a trial is running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 30
    while ray_processes() - before:
        assert time.monotonic() < deadline, ray_processes() - before
        time.sleep(0.5)


def test_ray_is_imported_by_the_sweep_modules_only():
    for path in [*ROOT.glob("nnpipe/*.py"), *ROOT.glob("stages/*.py")]:
        if path.name.startswith("sweep"):
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in (node.names if isinstance(node, ast.Import) else
                                  [ast.alias(node.module or "")])}
        assert "ray" not in imported, path
        assert "sweep" not in path.read_text().split("nnpipe import")[-1].split("\n")[0], path
