"""sweep: a grid of DVC experiments as Ray tasks, shared through git and DVC.

A copy of the repository (small epochs) pushes to a bare git remote and to a local-directory
DVC remote whose path has a space, in one temp dir (no network). Sweeps run on their own local
Ray and on a two-node cluster simulated on this machine (ray.cluster_utils.Cluster), each with
no dashboard and at most 2 CPUs; every Ray keeps its files under the temp dir (RAY_TMPDIR), so
no other Ray on the machine is seen or touched.
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
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from deps import ROOT
from e2e_util import copy_repo, run
from pipeline import with_changes
from local_http import closed_port, serve
from warm_util import alive, stop_servers

GRID = ["-S", "train_torch_mlp.lr=0.01,0.02,-1", "-S", "train_torch_mlp.epochs=5"]
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
SMALL = {"train_numpy_mlp.epochs": 100, "train_overfit_random.epochs": 50,
         "train_torch_mlp.epochs": 10}
SWEEP = ROOT / "sweep"


def sweep(repo: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **RAY_ENV, "PYTHONDONTWRITEBYTECODE": "1", **env}
    full.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=repo, env=full,
                          capture_output=True, text=True, timeout=timeout, check=False)


def lines(result, pattern: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if re.search(pattern, line)]


def exp_refs(git_remote: Path) -> list[str]:
    return run(git_remote, "git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()


def trial_names(work: Path, sets: list[str]) -> dict[str, str]:
    """Override string -> the trial name the sweep gives it at the work repo's HEAD."""
    from sweep.driver import grid
    from sweep.trial import trial_name

    commit = run(work, "git", "rev-parse", "HEAD").stdout.strip()
    return {" ".join(o): trial_name(commit, o) for o in grid(sets[1::2])}


# --- the package, without Ray -----------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update({node.module, *(f"{node.module}.{a.name}" for a in node.names)})
    return found


def test_the_trial_module_needs_the_standard_library_only():
    roots = {name.split(".")[0] for name in _imports(SWEEP / "trial.py")} - {"__future__"}
    assert roots <= set(sys.stdlib_module_names) | {"ray"}, roots  # ray: lazily, node id


def test_ray_is_imported_by_the_sweep_package_only():
    for path in (p for top in ("nnpipe", "stages", "warmstart", "fingerprint", "bench")
                 for p in ROOT.glob(f"{top}/**/*.py")):  # test_imports: nnpipe imports no sweep
        imported = _imports(path)
        assert not any(name == "ray" or name.startswith("ray.") for name in imported), path


def test_trial_names_are_deterministic_and_order_free():
    from sweep.trial import trial_name

    a = trial_name("c" * 40, ["x.lr=0.1", "x.epochs=5"])
    assert a == trial_name("c" * 40, ["x.epochs=5", "x.lr=0.1"]) and a.startswith("sweep-ccccccc-")
    assert a != trial_name("d" * 40, ["x.lr=0.1", "x.epochs=5"])


def test_the_grid_expands_as_dvc_queue_does_and_an_empty_one_is_refused():
    from nnpipe.core.errors import PipelineError
    from sweep.driver import grid

    assert grid(["a.b=1,2", "c=x"]) == [["a.b=1", "c=x"], ["a.b=2", "c=x"]]
    with pytest.raises(PipelineError, match=r"no trials"):
        grid(["a.b=range(0,0)"])


def test_a_step_dies_with_the_process_that_started_it(tmp_path):
    from sweep.trial import DIE_WITH_PARENT

    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {DIE_WITH_PARENT!r}, str(os.getpid()),"
        " 'sleep', '60'], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        _wait(lambda: Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sleep"), 10,
              "the step never started")
    finally:
        parent.kill()
        parent.wait()
    _wait(lambda: not alive(child), 10, "the step outlived its parent")


# --- a repository with its two remotes -----------------------------------------------------

@pytest.fixture(scope="module")
def remotes():
    """A working repo whose HEAD is on a bare git remote and whose outputs are on a DVC
    remote at a path with a space; Ray, the trials' clones and their warm server keep their
    files under the same temp dir (RAY_TMPDIR, TMPDIR)."""
    tmp = Path(tempfile.mkdtemp(prefix="nps", dir="/tmp"))  # short: Ray's socket paths
    paths = {"root": tmp, "git": tmp / "remote.git", "dvc": tmp / "dvc store",
             "work": tmp / "work", "ray": tmp / "r"}
    saved = {key: os.environ.get(key) for key in ("RAY_TMPDIR", "TMPDIR", *RAY_ENV)}
    (tmp / "t").mkdir()  # the trials' clones and their warm server
    os.environ.update(RAY_TMPDIR=str(paths["ray"]), TMPDIR=str(tmp / "t"), **RAY_ENV)
    try:
        run(tmp, "git", "init", "-q", "--bare", "-b", "main", str(paths["git"]))
        work = paths["work"]
        work.mkdir()
        copy_repo(work)
        params = yaml.safe_load((work / "params.yaml").read_text())
        (work / "params.yaml").write_text(yaml.safe_dump(with_changes(params, SMALL)))
        run(work, "dvc", "remote", "add", "-d", "store", str(paths["dvc"]))
        run(work, "dvc", "repro", "-q")
        run(work, "git", "add", "-A")
        run(work, "git", "commit", "-qm", "small epochs, remotes")
        run(work, "git", "remote", "add", "origin", str(paths["git"]))
        run(work, "git", "push", "-q", "origin", "main")
        run(work, "dvc", "push", "-q")
        yield paths
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        for warm in tmp.glob("*/nnpipe-sweep-warm-*"):
            stop_servers(warm)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("change, message", [
    (("--git-remote", "nosuch"), "git remote 'nosuch' not found"),
    (("--git-remote", "gone"), ("git remote 'gone' (/nonexistent/remote.git): "
                                "'/nonexistent/remote.git' does not appear to be a git "
                                "repository")),
    (("--dvc-remote", "nosuch"), "DVC remote 'nosuch' not found"),
    (("-S", "train_torch_mlp.lr=[0.1"), "-S: "),
    (("-S", "train_torch_mlp.epochs=range(1,1)"), "no trials"),
    (("--jobs", "0"), "--jobs 0: must be at least 1"),
    (("--metric", "torch_mlp.test.f2"), "--metric torch_mlp.test.f2: not a metric of dvc.yaml's"),
    (("--address", "127.0.0.1:{port}"), "no Ray cluster answers there"),
])
def test_setup_errors_are_one_line_exit_2_within_seconds(remotes, change, message):
    work = remotes["work"]
    run(work, "git", "remote", "add", "gone", "/nonexistent/remote.git", check=False)
    change = tuple(arg.format(port=closed_port()) for arg in change)
    start = time.monotonic()
    result = sweep(work, "-S", "train_torch_mlp.lr=0.1", *change)
    assert time.monotonic() - start < 30
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("sweep: error: ")
    assert message in result.stderr


@pytest.mark.slow
def test_an_address_where_no_ray_answers_is_one_line_within_30_s(remotes, tmp_path):
    with serve(tmp_path) as url:  # a port that answers, but not as Ray's GCS
        start = time.monotonic()
        result = sweep(remotes["work"], "-S", "train_torch_mlp.lr=0.1",
                       "--address", url.split("//")[1])
    assert time.monotonic() - start < 30 and result.returncode == 2
    assert re.fullmatch(r"sweep: error: --address 127\.0\.0\.1:\d+: no Ray cluster answers there "
                        r"\(.+\); start one with `ray start --head`, or drop --address to run on "
                        r"this machine\n", result.stderr), result.stderr


@pytest.mark.slow
def test_outputs_missing_on_the_dvc_remote_name_the_command_to_run(remotes):
    run(remotes["work"], "dvc", "remote", "add", "--local", "-f", "empty",
        str(remotes["root"] / "empty"))
    result = sweep(remotes["work"], "-S", "train_torch_mlp.lr=0.1", "--dvc-remote", "empty")
    assert re.fullmatch(r"sweep: error: \d+ output file\(s\) of HEAD \w{7} are not on DVC remote "
                        r"'empty', where trials pull them from: run dvc push\n", result.stderr)


@pytest.mark.slow
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


# --- sweeps: a read-only remote, a partial trial, a cluster and a recorded one --------------

@pytest.fixture(scope="module")
def read_only_sweep(remotes):
    """GRID's lr=0.01 trial on a local Ray against a read-only DVC remote: the same store
    served over HTTP (GET only)."""
    work = remotes["work"]
    with serve(remotes["dvc"]) as url:
        run(work, "dvc", "remote", "add", "--local", "-f", "ro", url)
        return sweep(work, "-S", "train_torch_mlp.lr=0.01", "-S", "train_torch_mlp.epochs=5",
                     "--dvc-remote", "ro", "--jobs", "1")


@pytest.mark.slow
def test_a_trial_whose_outputs_cannot_be_pushed_fails_and_leaves_no_ref(read_only_sweep,
                                                                         remotes):
    result = read_only_sweep
    assert result.returncode == 1, result.stderr
    assert exp_refs(remotes["git"]) == []  # nothing on the git remote claims it is done
    failed = lines(result, r"^sweep: \[1/1\] sweep-\w+-\w+ .*: FAILED dvc push: ")
    assert len(failed) == 1, result.stderr
    assert lines(result, r"^sweep: running on a local Ray: 1 node\(s\), 1 CPU\(s\)$")


@pytest.fixture(scope="module")
def partial_ref(remotes) -> str:
    """GRID's lr=0.02 trial as a ref on the git remote whose model is on no DVC remote."""
    name = trial_names(remotes["work"], GRID)["train_torch_mlp.lr=0.02 train_torch_mlp.epochs=5"]
    clone = remotes["root"] / "planter"
    run(remotes["root"], "git", "clone", "-q", str(remotes["git"]), str(clone))
    lock = (clone / "dvc.lock").read_text()
    model = re.search(r"path: models/torch_mlp\n\s+hash: md5\n\s+md5: (\w+)\.dir", lock).group(1)
    (clone / "dvc.lock").write_text(lock.replace(model, "f" * 32))
    run(clone, "git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam",
        "an experiment whose outputs were never pushed")
    head = run(clone, "git", "rev-parse", "HEAD~1").stdout.strip()
    run(clone, "git", "push", "-q", "origin", f"HEAD:refs/exps/{head[:2]}/{head[2:]}/{name}")
    return name


@pytest.fixture(scope="module")
def cluster(remotes):
    """Two nodes of 1 CPU; like `ray start`, it records its address under RAY_TMPDIR."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        yield nodes
    finally:
        nodes.shutdown()


@pytest.fixture(scope="module")
def grid_sweep(remotes, read_only_sweep, partial_ref, cluster):
    """GRID on the cluster, after the read-only sweep failed lr=0.01 and lr=0.02 was planted."""
    return sweep(remotes["work"], *GRID, "--address", cluster.address)


@pytest.mark.slow
def test_each_trial_reports_and_an_invalid_one_fails_alone(grid_sweep, cluster):
    result = grid_sweep
    assert result.returncode == 1, result.stderr
    assert lines(result, rf"^sweep: running on the Ray cluster at {cluster.address}: 2 node")
    finished = lines(result, r"^sweep: \[\d/3\] sweep-")
    assert len(finished) == 3, result.stderr
    failed = lines(result, "FAILED")
    assert len(failed) == 1 and "train_torch_mlp.lr=-1" in failed[0]
    assert "must be greater than 0" in failed[0]
    ok = [line for line in finished if "FAILED" not in line]
    assert all(re.search(r"torch_mlp\.test\.f1=[01]\.\d{4} in [\d.]+ s on node \w+", line)
               for line in ok), ok
    assert len({re.search(r"on node (\w+)", line).group(1) for line in ok}) == 2  # both nodes
    board = result.stderr.split("leaderboard by torch_mlp.test.f1:")[1].splitlines()
    values = [float(line.split()[2]) for line in board if re.match(r"sweep:\s+\d\.", line)]
    assert len(values) == 2 and values == sorted(values, reverse=True)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_partial_trial_on_the_git_remote_is_run_again(grid_sweep, partial_ref):
    result = grid_sweep
    assert lines(result, rf"^sweep: {partial_ref} is on origin but \d+ of its output files are "
                         r"not on store: removing it to run it again$"), result.stderr
    assert lines(result, rf"^sweep: \[\d/3\] {partial_ref} .*torch_mlp\.test\.f1="), result.stderr
    assert not lines(result, "^sweep: skip")


@pytest.mark.slow
def test_a_fresh_clone_pulls_every_trial_with_params_and_metrics(grid_sweep, remotes,
                                                                  tmp_path):
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(remotes["git"]), str(clone))
    run(clone, "dvc", "exp", "pull", "-A", "origin")  # fails if an output is missing
    shown = json.loads(run(clone, "dvc", "exp", "show", "--json", "-A").stdout)
    exps = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            params = rev["data"]["params"]["params.yaml"]["data"]["train_torch_mlp"]
            metrics = rev["data"]["metrics"]["reports/metrics.json"]["data"]
            exps[exp["name"]] = (params["lr"], metrics["torch_mlp"]["test"]["f1"])
    assert sorted(lr for lr, _ in exps.values()) == [0.01, 0.02]
    assert all(0 <= f1 <= 1 for _, f1 in exps.values())
    assert all(name.startswith("sweep-") for name in exps)


@pytest.mark.slow
def test_a_rerun_skips_done_trials_beside_a_recorded_cluster(grid_sweep, remotes, cluster):
    assert (remotes["ray"] / "ray" / "ray_current_cluster").read_text() == cluster.address
    again = sweep(remotes["work"], *GRID, "--jobs", "1")
    assert len(lines(again, r"^sweep: skip sweep-\w+-\w+ .*: done \(on origin and store\)$")) == 2
    assert lines(again, r"^sweep: running on a local Ray: 1 node")  # not the recorded cluster
    assert len(lines(again, r"^sweep: \[\d/1\] .*FAILED")) == 1  # only the invalid one re-ran
    assert again.returncode == 1 and "Traceback" not in again.stderr, again.stderr


def _weights_object(remotes, name: str) -> str:
    """The path under a DVC cache of the torch_mlp weights of trial ``name`` on the remotes."""
    ref = next(r for r in exp_refs(remotes["git"]) if r.endswith(f"/{name}"))
    lock = run(remotes["git"], "git", "show", f"{ref}:dvc.lock").stdout
    listing = re.search(r"path: models/torch_mlp\n\s+hash: md5\n\s+md5: (\w+\.dir)", lock).group(1)
    files = json.loads((remotes["dvc"] / "files" / "md5" / listing[:2] / listing[2:]).read_text())
    md5 = next(f["md5"] for f in files if f["relpath"] == "weights.npz")
    return f"files/md5/{md5[:2]}/{md5[2:]}"


@pytest.mark.slow
@pytest.mark.parametrize("also_from_the_cache, says", [
    (False, "pushed them again from this machine's cache"),
    (True, "removing it to run it again")])
def test_a_done_trial_whose_weights_left_the_dvc_remote_is_repaired_not_skipped(
        grid_sweep, remotes, tmp_path, also_from_the_cache, says):
    sets = ["-S", "train_torch_mlp.lr=0.01", "-S", "train_torch_mlp.epochs=5"]
    name = trial_names(remotes["work"], sets)["train_torch_mlp.lr=0.01 train_torch_mlp.epochs=5"]
    weights = _weights_object(remotes, name)
    (remotes["dvc"] / weights).unlink()  # DVC's own `dvc status -c` still says in sync
    if also_from_the_cache:
        (remotes["work"] / ".dvc" / "cache" / weights).unlink()
    result = sweep(remotes["work"], *sets, "--jobs", "1")
    assert result.returncode == 0 and lines(
        result, rf"^sweep: {name} is on origin but 1 of its output files are not on store: "
                rf"{says}$"), result.stderr
    ran, skipped = lines(result, rf"^sweep: \[1/1\] {name} "), lines(result, "^sweep: skip")
    assert (bool(ran), bool(skipped)) == (also_from_the_cache, not also_from_the_cache)
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(remotes["git"]), str(clone))
    run(clone, "dvc", "exp", "pull", "origin", name)  # fails if an output is missing
    assert (clone / ".dvc" / "cache" / weights).is_file()


# --- interruption and retries ------------------------------------------------------------------

def _ray_processes(marker: str) -> set[int]:
    """Ray's daemons whose command line names ``marker`` (their own session directory)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if marker.encode() in cmdline and (b"raylet" in cmdline or b"gcs_server" in cmdline):
            found.add(int(entry.name))
    return found


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


@pytest.mark.slow
def test_ctrl_c_removes_the_clones_cancels_the_trials_and_stops_its_ray(remotes):
    temp = remotes["root"] / "c"  # the sweep's TMPDIR and RAY_TMPDIR: its clones, its Ray
    temp.mkdir()
    env = {**os.environ, **RAY_ENV, "TMPDIR": str(temp), "RAY_TMPDIR": str(temp)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "sweep", "-S",
                             "train_torch_mlp.lr=0.0051,0.0052", "--jobs", "2"],
                            cwd=remotes["work"], env=env, stderr=subprocess.PIPE, text=True)
    try:  # both trials are in `dvc exp run` (their clone has its DVC remote set)
        _wait(lambda: len(list(temp.glob("nnpipe-trial-*/repo/.dvc/config.local"))) == 2
              or proc.poll() is not None, 180, "trials never started")
        assert proc.poll() is None and _ray_processes(str(temp))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(temp.glob("nnpipe-trial-*")) == []  # removed before the driver exits
    _wait(lambda: not _ray_processes(str(temp)), 30, "the sweep's Ray is still running")


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_retried(remotes, tmp_path, monkeypatch):
    import logging

    from sweep import cluster as sweep_cluster
    from sweep import trial

    marker = tmp_path / "died-once"

    def dies_once(spec):
        if not os.path.exists(spec["marker"]):
            open(spec["marker"], "w").close()
            os._exit(1)  # the worker process dies, as when its machine goes away
        return {"name": spec["name"], "overrides": [], "ok": True, "metrics": {},
                "node": "", "seconds": 0.0, "error": ""}

    monkeypatch.setattr(trial, "run_trial", dies_once)
    seen = []
    results = sweep_cluster.run([{"name": "t", "overrides": [], "marker": str(marker)}], None,
                                1, lambda result, n: seen.append(n), logging.getLogger("t"))
    assert [r["ok"] for r in results] == [True] and seen == [1] and marker.exists()


@pytest.mark.slow
def test_the_trial_code_ships_by_value_to_workers_without_nnpipe(tmp_path):
    import ray

    from sweep import trial

    ray.cloudpickle.register_pickle_by_value(trial)
    (tmp_path / "task.pkl").write_bytes(ray.cloudpickle.dumps((trial.run_trial,
                                                               trial.trial_name)))
    code = ("import pickle, sys\n"
            "run_trial, trial_name = pickle.load(open('task.pkl', 'rb'))\n"
            "assert 'nnpipe' not in sys.modules, sorted(sys.modules)\n"
            "print(run_trial.__name__, trial_name('c' * 40, []))\n")
    result = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("run_trial sweep-ccccccc-")
