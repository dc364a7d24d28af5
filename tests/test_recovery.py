"""Recovery: artifacts that cannot run code, training that stops when it diverges, and a
killed `dvc repro` that resumes to the same bytes, through real processes.

1. Artifacts cannot run code: a pickle payload planted in each kind of file a consumer loads
   is refused with one line, and its side effect never happens.
2. Numerical guards: a diverging run stops naming the stage and the epoch, writing nothing.
3. The real `dvc repro` of a tiny pipeline in two copies of the repo, side by side: one
   through the warm server and SIGKILLed mid-training (no temp or partial files), then
   resumed; the other uninterrupted with NNPIPE_WARM=0. They end byte-identical, dvc.lock
   included.

The bad-input table (one line, exit 2, nothing written) is tests/test_reliability.py.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from contract import (AUTO, LINEAR, NUMPY, PROC_TIMEOUT, TORCH, Result,
                      assert_one_line_error, build_good, child_env, declared_outputs, flag,
                      model_file, predict_command, prefix, prepare, run_all, stage_command,
                      train, train_input)
from e2e_util import copy_repo, run, stages_run
from pipeline import MODELS, STAGES, tiny_params, tree_bytes, write_params
from warm_util import forks

from nnpipe.core import files

pytestmark = pytest.mark.slow
N, T, L = (f"train_{m}" for m in (NUMPY, TORCH, LINEAR))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return build_good(tmp_path_factory.mktemp("good") / "good")


def upstream(name: str) -> set[str]:
    """The stages whose outputs ``name`` needs, directly or through others."""
    producer = {out: stage for stage, body in STAGES.items() for out in body.outs}
    found: set[str] = set()
    todo = [dep for dep in STAGES[name].deps if dep in producer]
    while todo:
        stage = producer[todo.pop()]
        if stage not in found:
            found.add(stage)
            todo += [dep for dep in STAGES[stage].deps if dep in producer]
    return found


def tree_hashes(repo: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/, reports/."""
    return {f"{top}/{name}": hashlib.sha256(data).hexdigest()
            for top in ("data", "models", "reports")
            for name, data in tree_bytes(repo / top).items()}


def temp_files(repo: Path) -> list[Path]:
    return [f for top in ("data", "models", "reports") for f in (repo / top).rglob(".*.tmp")]


# --- 1. artifacts cannot run code --------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker`` (the pickle holds only ``open`` and two strings)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_payload(path: Path, marker: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    """A pickle payload in the format the slot expects to hold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        bomb = np.empty(1, dtype=object)
        bomb[0] = Payload(marker)
        with open(path, "wb") as handle:
            np.savez(handle, X=bomb, y=np.zeros(1, np.int64), W1=bomb, b1=bomb, W2=bomb, b2=bomb)
    elif path.suffix == ".pt":
        import torch

        torch.save(Payload(marker), path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))


def load_unsafely(path: Path) -> None:
    """What a careless loader would do with the slot's file."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=True) as archive:
            archive["X"]
    elif path.suffix == ".pt":
        import torch

        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())


@pytest.mark.parametrize("suffix, protocol", [(".npz", 5), (".pt", 5), (".json", 0),
                                              (".json", 5)])
def test_the_planted_payload_is_live(tmp_path, suffix, protocol):
    """The payload really runs when loaded carelessly, so its absence below means something."""
    marker = tmp_path / "PWNED"
    path = tmp_path / f"slot{suffix}"
    plant_payload(path, marker, protocol)
    assert not marker.exists()
    load_unsafely(path)
    assert marker.exists()


# (slot, consumer, pickle protocol for raw pickles): each consumer, each kind of file it loads
ARTIFACT_CASES = [
    (train_input(NUMPY, "train"), train(NUMPY), 5),
    (train_input(NUMPY, "val"), train(NUMPY), 5),
    (train_input(TORCH, "train"), train(TORCH), 5),
    (train_input(NUMPY, "state"), train(NUMPY), 0),
    (train_input(LINEAR, "state"), train(LINEAR), 5),
    (flag(f"plot_model@{NUMPY}", "test"), "evaluate", 5),
    (train_input(AUTO, "val"), "evaluate", 5),
    (model_file(NUMPY, "weights.npz"), "evaluate", 5),
    (model_file(TORCH, "config.json"), "evaluate", 5),
    (model_file(TORCH, "weights.npz"), f"plot_model@{TORCH}", 5),
    (model_file(NUMPY, "weights.npz"), "predict", 5),
    (model_file(NUMPY, "config.json"), "predict", 0),
    (model_file(NUMPY, "config.json"), "predict", 5),
]


@pytest.mark.parametrize("slot, consumer, protocol", ARTIFACT_CASES,
                         ids=[f"{c}-{s}-p{p}" for s, c, p in ARTIFACT_CASES])
def test_pickle_in_an_artifact_is_refused_by_its_consumer(good, tmp_path, slot, consumer,
                                                          protocol):
    root, marker = tmp_path / "root", tmp_path / "PWNED"
    prepare(consumer, root, good, with_outputs=False)
    if consumer == "predict":
        argv = predict_command("X1=0.1", "X2=0.1")
    else:
        assert any(Path(slot).is_relative_to(dep) for dep in STAGES[consumer].deps), slot
        argv = stage_command(consumer, write_params(tmp_path / "params.yaml", tiny_params()))
    plant_payload(root / slot, marker, protocol)
    before = tree_bytes(root)
    (result,) = run_all([(argv, root)])
    assert_one_line_error(result, prefix(consumer), [slot])
    assert not marker.exists(), "unpickling ran the payload"
    assert tree_bytes(root) == before
    for out in declared_outputs(consumer):
        assert not (root / out).exists()


# --- 2. numerical guards -----------------------------------------------------------------------

DIVERGING = {  # model, param changes, the train split's X scaled by (params bound lr at 1e6)
    # (with fewer epochs the loss only grows to ~1e200: huge, but finite)
    f"{N}-lr_1e6": (NUMPY, {f"{N}.lr": 1e6, f"{N}.init_scale": 1.0, f"{N}.epochs": 200}, 1.0),
    f"{T}-X_1e300": (TORCH, {f"{T}.lr": 1e6}, 1e300),  # float32 inputs overflow to inf
    f"{L}-X_1e300": (LINEAR, {}, 1e300),
}


@pytest.fixture(scope="module")
def diverged(good, tmp_path_factory) -> dict[str, tuple[Result, Path, dict]]:
    """Every DIVERGING row run at once: name -> (result, its root, the root before the run)."""
    roots, jobs, before = {}, [], {}
    for name, (model, changes, scale) in DIVERGING.items():
        tmp = tmp_path_factory.mktemp("diverge")
        roots[name] = tmp / "root"
        prepare(train(model), roots[name], good, with_outputs=False)
        split = roots[name] / train_input(model, "train")
        arrays = files.read_npz(str(split))
        files.write_npz(str(split), {**arrays, "X": arrays["X"] * scale})
        before[name] = tree_bytes(roots[name])
        params = write_params(tmp / "params.yaml", tiny_params(changes))
        jobs.append((stage_command(train(model), params), roots[name]))
    return {name: (result, roots[name], before[name])
            for name, result in zip(DIVERGING, run_all(jobs))}


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_stops_with_an_error_naming_stage_and_epoch(name, diverged):
    """One error line, the last; before it only the stage's own log lines; nothing written."""
    result, root, before = diverged[name]
    stage = STAGES[train(DIVERGING[name][0])]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if "error:" in line]
    assert errors == lines[-1:], result.stderr
    assert errors[0].startswith(f"{stage.prefix}: error: {stage.prefix}: training diverged at "
                                "epoch "), errors
    assert [line for line in lines if not line.startswith(f"{stage.prefix}: ")] == []
    for out in stage.outs:  # the model directory and the curves
        assert not (root / out).exists(), out
    assert tree_bytes(root) == before


# --- 3. the real dvc repro: SIGKILL mid-training; warm server and NNPIPE_WARM=0 agree ----------

KILLED = train(NUMPY)
# Tiny, but the killed model trains long enough to be caught between two log lines.
REPRO_PARAMS = tiny_params({f"{N}.epochs": 6_000, f"{N}.log_every": 300})


def repo_with_params(path: Path, p: dict) -> Path:
    path.mkdir()
    copy_repo(path)
    write_params(path / "params.yaml", p)
    run(path, "git", "commit", "-qam", "tiny params")
    return path


def dvc_popen(repo: Path, *args: str, **kwargs) -> subprocess.Popen:
    """`dvc` in a copy of the repo: its stages import that copy's code (no PYTHONPATH)."""
    env = child_env(pythonpath=False, **kwargs.pop("env", {}))
    return subprocess.Popen(["dvc", *args], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


@dataclass
class Repros:
    warm: Path            # killed mid-training, then resumed
    cold: Path            # uninterrupted, NNPIPE_WARM=0
    cold_ran: set[str]
    after_kill: list[Path]          # temp files, model dir, curves left by the kill
    stage_procs_alive: list         # the killed stage's processes still running
    resumed_ran: set[str]


def status(process) -> str | None:
    import psutil

    try:
        return process.status()
    except psutil.NoSuchProcess:
        return None


def kill_mid_training(repo: Path) -> tuple[list, list[Path]]:
    """`dvc repro KILLED`, SIGKILLed (with its process group and the stage's fork of the warm
    server) between two of the training's log lines: (its processes still alive, what the
    kill left of the stage's outputs and temp files)."""
    import psutil

    proc = dvc_popen(repo, "repro", KILLED, start_new_session=True)
    log: list[str] = []
    training = threading.Event()
    epoch_line = f"{STAGES[KILLED].prefix}: Epoch:"

    def read() -> None:
        for line in proc.stdout:
            log.append(line)
            if sum(epoch_line in seen for seen in log) >= 2:
                training.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stage_procs: list = []
    try:
        assert training.wait(timeout=PROC_TIMEOUT), "".join(log)
        assert proc.poll() is None, "training ended before the kill:\n" + "".join(log)
        stage_procs = psutil.Process(proc.pid).children(recursive=True)
        # The stage itself may run in a fork of the warm server, outside dvc's process tree.
        stage_procs += [p for p in map(psutil.Process, forks(os.environ["NNPIPE_WARM_DIR"]))
                        if p.cwd() == str(repo)]
        assert any(f"--name {NUMPY}" in " ".join(p.cmdline()) for p in stage_procs)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the fork dies with its client
        proc.wait(timeout=30)
        reader.join(timeout=10)
    _, alive = psutil.wait_procs(stage_procs, timeout=10)
    left = temp_files(repo) + [repo / out for out in STAGES[KILLED].outs if (repo / out).exists()]
    return [p for p in alive if status(p) not in (None, psutil.STATUS_ZOMBIE)], left


@pytest.fixture(scope="module")
def repros(tmp_path_factory) -> Repros:
    """Two copies of the repo on REPRO_PARAMS, run side by side: one killed mid-training and
    resumed through the warm server, one uninterrupted with NNPIPE_WARM=0."""
    warm = repo_with_params(tmp_path_factory.mktemp("repro") / "warm", REPRO_PARAMS)
    cold = repo_with_params(tmp_path_factory.mktemp("repro") / "cold", REPRO_PARAMS)
    uninterrupted = dvc_popen(cold, "repro", env={"NNPIPE_WARM": "0"})
    try:
        alive, left = kill_mid_training(warm)
        resumed = dvc_popen(warm, "repro")
        resumed_out, _ = resumed.communicate(timeout=PROC_TIMEOUT)
        assert resumed.returncode == 0, resumed_out
    finally:
        cold_out, _ = uninterrupted.communicate(timeout=PROC_TIMEOUT)
    assert uninterrupted.returncode == 0, cold_out
    return Repros(warm, cold, stages_run(cold_out), left, alive, stages_run(resumed_out))


def test_sigkill_mid_training_leaves_no_partial_output_and_resumes(repros):
    """The killed stage's processes are gone, it left no temp file and none of its outputs,
    and the next `dvc repro` redoes it without redoing what it needed."""
    assert repros.stage_procs_alive == []
    assert repros.after_kill == []  # no temp file, no model directory, no curves
    assert temp_files(repros.warm) == []
    # What the killed run had finished is kept; the killed stage and the rest run.
    assert repros.resumed_ran == set(STAGES) - upstream(KILLED)


def test_warm_and_cold_repro_are_byte_identical(repros):
    """The resumed warm run and the uninterrupted NNPIPE_WARM=0 run: every output and
    dvc.lock, byte for byte."""
    assert repros.cold_ran == set(STAGES)
    warm, cold = tree_hashes(repros.warm), tree_hashes(repros.cold)
    for model in MODELS:
        assert model_file(model, "weights.npz") in cold
    assert sum(name.endswith(".png") for name in cold) == 2 + 3 * len(MODELS)
    assert sorted(n for n in warm.keys() | cold.keys() if warm.get(n) != cold.get(n)) == []
    assert (repros.warm / "dvc.lock").read_bytes() == (repros.cold / "dvc.lock").read_bytes()
