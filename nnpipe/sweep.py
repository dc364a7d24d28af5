"""``python -m nnpipe.sweep``: a grid of DVC experiments fanned out as Ray tasks.

    python -m nnpipe.sweep -S 'train_torch_mlp.lr=0.001,0.01' [-S ...] [--jobs N]
        [--address ADDR] [--git-remote REMOTE] [--dvc-remote NAME] [--metric MODEL.SPLIT.NAME]

``-S`` takes DVC's own override syntax; comma lists make a grid, expanded by the same code as
``dvc exp run --queue -S``. Each trial is one Ray task (nnpipe.sweep_trial) that clones the
git remote at this commit, runs ``dvc exp run --pull --allow-missing -n NAME -S ...`` and
pushes the experiment to the git and DVC remotes; the driver then pulls every trial with
``dvc exp pull`` and prints a leaderboard. Trials already on the git remote are skipped, so a
sweep can be re-run to resume. Without ``--address`` (or RAY_ADDRESS) a local Ray with
``--jobs`` CPUs is started and stopped; with it, the sweep joins that cluster.

Exit 0 when every trial succeeded, 1 when one failed, 2 (one line) when the sweep cannot start.
Ray is imported here only, never by a stage.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any, NamedTuple

from nnpipe import sweep_trial

from nnpipe.core import cli
from nnpipe.core.errors import PipelineError, short


class Setup(NamedTuple):
    commit: str
    git_url: str
    dvc_remote: str
    dvc_remote_url: str


def grid(sets: list[str]) -> list[list[str]]:
    """Each trial's ``-S`` overrides, expanded as ``dvc exp run --queue -S`` expands them."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    try:
        sweeps = get_hydra_sweeps(to_path_overrides(sets))
    except Exception as exc:  # hydra's grammar errors have no common base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"-S: {short(first, 200)}") from None
    return [[override if path == "params.yaml" else f"{path}:{override}"
             for path, overrides in sweep.items() for override in overrides]
            for sweep in sweeps]


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise PipelineError(f"git {' '.join(args)}: "
                            f"{short(proc.stderr.strip().splitlines()[-1:] or ['failed'], 200)}")
    return proc.stdout.strip()


def _dvc(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def check_setup(git_remote: str, dvc_remote: str | None) -> Setup:
    """The commit, git URL and DVC remote of the sweep; a one-line error if one is missing,
    the workspace is dirty, or the commit is not on the git remote."""
    try:
        git_url = _git("remote", "get-url", git_remote)
    except PipelineError:
        raise PipelineError(f"git remote '{short(git_remote)}' not found "
                            "(add one: git remote add origin URL)") from None
    remotes = dict(line.split(None, 1) for line in _dvc("remote", "list").splitlines()
                   if len(line.split(None, 1)) == 2)
    name = dvc_remote or _dvc("remote", "default")
    if not name:
        raise PipelineError("no DVC remote: give --dvc-remote NAME or set a default "
                            "(dvc remote add -d NAME URL)")
    if name not in remotes:
        raise PipelineError(f"DVC remote '{short(name)}' not found (dvc remote list)")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise PipelineError("the workspace has uncommitted changes: commit them, then sweep "
                            "(trials run the committed code and params)")
    commit = _git("rev-parse", "HEAD")
    heads = _git("ls-remote", git_url)
    if commit not in {line.split()[0] for line in heads.splitlines() if line.strip()}:
        raise PipelineError(f"HEAD {commit[:7]} is not on git remote '{git_remote}': "
                            f"git push {git_remote} HEAD first")
    url = remotes[name].split()[0]
    if "://" not in url and not os.path.isabs(url):  # a path relative to .dvc/
        url = os.path.normpath(os.path.join(_git("rev-parse", "--show-toplevel"), ".dvc", url))
    return Setup(commit, git_url, name, url)


def done_on_remote(git_url: str, commit: str) -> set[str]:
    """Names of the experiments of ``commit`` already on the git remote."""
    prefix = f"refs/exps/{commit[:2]}/{commit[2:]}/"
    refs = _git("ls-remote", git_url, f"{prefix}*")
    return {line.split()[1][len(prefix):] for line in refs.splitlines() if line.strip()}


def value_at(metrics: dict, dotted: str) -> float | None:
    node: Any = metrics
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, (int, float)) else None


def trial_metrics(name: str) -> dict:
    """A pulled experiment's metrics, read through DVC's API."""
    import dvc.api

    merged: dict = {}
    for key, content in dvc.api.metrics_show(rev=name).items():  # "file:top-level key"
        sweep_trial.deep_merge(merged, {key.rsplit(":", 1)[-1]: content})
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnpipe.sweep", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("-S", "--set-param", dest="sets", action="append", required=True,
                        metavar="[FILE:]KEY=VALUES", help="as dvc exp run -S; a,b,c makes a grid")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--git-remote", default="origin")
    parser.add_argument("--dvc-remote", help="default: the repository's default DVC remote")
    parser.add_argument("--metric", default="torch_mlp.test.f1", help="MODEL.SPLIT.NAME")
    args = parser.parse_args(argv)
    with cli.stage("sweep") as log:
        if args.jobs < 1:
            raise PipelineError(f"--jobs {args.jobs}: must be at least 1")
        trials = grid(args.sets)
        setup = check_setup(args.git_remote, args.dvc_remote)
        try:
            code = run_sweep(trials, setup, args, log)
        except KeyboardInterrupt:
            log.info("interrupted: running trials cancelled, Ray stopped")
            code = 130
    raise SystemExit(code)


def run_sweep(trials: list[list[str]], setup: Setup, args: argparse.Namespace, log) -> int:
    from nnpipe import sweep_ray

    names = [sweep_trial.trial_name(setup.commit, overrides) for overrides in trials]
    done = done_on_remote(setup.git_url, setup.commit)
    todo = []
    for name, overrides in zip(names, trials):
        if name in done:
            log.info("skip %s %s: already on %s", name, " ".join(overrides), args.git_remote)
        else:
            todo.append({"name": name, "overrides": overrides, "git_url": setup.git_url,
                         "commit": setup.commit, "dvc_remote": setup.dvc_remote,
                         "dvc_remote_url": setup.dvc_remote_url})
    start = time.monotonic()
    results = sweep_ray.run(todo, args.address, args.jobs, lambda r, n: _report(r, n, len(todo),
                                                                                args.metric, log))
    failed = [r for r in results if not r["ok"]]
    succeeded = [n for n in names if n in done or any(r["ok"] and r["name"] == n
                                                          for r in results)]
    if succeeded:
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "pull", "-r",
                               setup.dvc_remote, args.git_remote, *succeeded],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            log.info("dvc exp pull failed: %s", short(proc.stderr.strip(), 300))
            return 1
    _leaderboard(succeeded, trials, names, args.metric, log)
    log.info("%d trial(s): %d run, %d skipped, %d failed in %.1f s", len(trials),
             len(todo) - len(failed), len(trials) - len(todo), len(failed),
             time.monotonic() - start)
    return 1 if failed else 0


def _report(result: dict, finished: int, total: int, metric: str, log) -> None:
    shown = " ".join(result["overrides"])
    if result["ok"]:
        value = value_at(result["metrics"], metric)
        log.info("[%d/%d] %s %s: %s=%s in %.1f s on node %s", finished, total, result["name"],
                 shown, metric, "n/a" if value is None else f"{value:.4f}", result["seconds"],
                 result["node"][:8] or "?")
    else:
        log.info("[%d/%d] %s %s: FAILED %s", finished, total, result["name"], shown,
                 result["error"])


def _leaderboard(succeeded: list[str], trials: list[list[str]], names: list[str], metric: str,
                 log) -> None:
    overrides = dict(zip(names, trials))
    rows = [(value_at(trial_metrics(name), metric), name) for name in succeeded]
    rows.sort(key=lambda row: (row[0] is None, -(row[0] or 0.0), row[1]))
    log.info("leaderboard by %s:", metric)
    for rank, (value, name) in enumerate(rows, 1):
        log.info("%2d. %s  %s  %s", rank, "n/a" if value is None else f"{value:.4f}", name,
                 " ".join(overrides[name]))


if __name__ == "__main__":
    cli.run_command(main)
