"""The sweep's driver: expand the grid, check remotes and Ray, fan the trials out, report.

Ray is imported by sweep.cluster only, and only once the sweep has trials to run.
"""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, NamedTuple

from nnpipe.core.errors import PipelineError, short
from sweep import cluster, remotes, trial


class Options(NamedTuple):
    address: str | None
    jobs: int
    metric: str


def grid(sets: list[str]) -> list[list[str]]:
    """Each trial's ``-S`` overrides, expanded as ``dvc exp run --queue -S`` expands them."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    try:
        sweeps = get_hydra_sweeps(to_path_overrides(sets))
    except Exception as exc:  # hydra's grammar errors have no common base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"-S: {short(first, 200)}") from None
    trials = [[override if path == "params.yaml" else f"{path}:{override}"
               for path, overrides in sweep.items() for override in overrides]
              for sweep in sweeps]
    if not trials:
        raise PipelineError(f"-S {short(' -S '.join(sets), 200)}: no trials (an empty range "
                            "or list makes an empty grid)")
    return trials


def sweep(sets: list[str], git_remote: str, dvc_remote: str | None, options: Options,
          log) -> int:
    """Run the grid; 0 when every trial succeeded, 1 when one failed."""
    trials = grid(sets)
    check_metric(options.metric)
    setup = remotes.check_setup(git_remote, dvc_remote)
    if options.address is not None:
        cluster.check_address(options.address)
    names = [trial.trial_name(setup.commit, overrides) for overrides in trials]
    done = finished_trials(setup, names, log)
    todo = []
    for name, overrides in zip(names, trials):
        if name in done:
            log.info("skip %s %s: done (on %s and %s)", name, " ".join(overrides),
                     git_remote, setup.dvc_remote)
        else:
            todo.append({"name": name, "overrides": overrides, "git_url": setup.git_url,
                         "commit": setup.commit, "dvc_remote": setup.dvc_remote,
                         "dvc_remote_url": setup.dvc_remote_url})
    start = time.monotonic()
    results = cluster.run(todo, options.address, options.jobs,
                          lambda r, n: _report(r, n, len(todo), options.metric, log), log)
    failed = [r for r in results if not r["ok"]]
    ran_ok = {r["name"] for r in results if r["ok"]}
    succeeded = [n for n in names if n in done or n in ran_ok]
    if succeeded and not _pull(setup, succeeded, log):
        return 1
    _leaderboard(succeeded, dict(zip(names, trials)), options.metric, log)
    log.info("%d trial(s): %d run, %d skipped, %d failed in %.1f s", len(trials),
             len(todo) - len(failed), len(trials) - len(todo), len(failed),
             time.monotonic() - start)
    return 1 if failed else 0


def finished_trials(setup: remotes.Setup, names: list[str], log) -> set[str]:
    """The trials whose ref is on the git remote and whose outputs are all on the DVC remote,
    each object asked of the remote by its hash. A trial lacking some there has them pushed
    again from this machine's cache, or else its ref removed, so that it runs again."""
    on_remote = remotes.exp_refs(setup)
    mine = [name for name in names if name in on_remote]
    if not mine:
        return set()
    remotes.fetch_refs(setup, mine)
    missing = remotes.missing_outputs([on_remote[name] for name in mine], setup.dvc_remote)
    again, pushed = [], []
    for name in mine:
        gap = missing[on_remote[name]]
        count = len(gap.cached) + len(gap.lost)
        if not count:
            continue
        remotes.repair(setup.dvc_remote, gap, push=not gap.lost)
        (again if gap.lost else pushed).append(name)
        log.info("%s is on %s but %d of its output files are not on %s: %s", name,
                 setup.git_remote, count, setup.dvc_remote, "removing it to run it again"
                 if gap.lost else "pushed them again from this machine's cache")
    if pushed:  # the remote asked again: a repair that did not take is a trial to run
        recheck = remotes.missing_outputs([on_remote[name] for name in pushed],
                                          setup.dvc_remote)
        for name in [name for name in pushed if any(recheck[on_remote[name]])]:
            log.info("%s: still not all on %s: removing it to run it again", name,
                     setup.dvc_remote)
            again.append(name)
    if again:
        remotes.remove_refs(setup, again)
    return set(mine) - set(again)


def _pull(setup: remotes.Setup, names: list[str], log) -> bool:
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "pull", "-r",
                           setup.dvc_remote, setup.git_remote, *names],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        log.info("dvc exp pull failed: %s", short(proc.stderr.strip(), 300))
    return proc.returncode == 0


def value_at(metrics: dict, dotted: str) -> float | None:
    node: Any = metrics
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, (int, float)) else None


def trial_metrics(name: str | None) -> dict:
    """A pulled experiment's metrics (None: the workspace's), read through DVC's API."""
    import dvc.api

    merged: dict = {}
    for key, content in dvc.api.metrics_show(rev=name).items():  # "file:top-level key"
        trial.deep_merge(merged, {key.rsplit(":", 1)[-1]: content})
    return merged


def check_metric(metric: str) -> None:
    """``metric`` must name a number of the metrics files evaluate writes (as committed)."""
    metrics = trial_metrics(None)
    if value_at(metrics, metric) is None:
        models = ", ".join(sorted(metrics)) or "none: run dvc repro and commit"
        raise PipelineError(f"--metric {short(metric)}: not a metric of dvc.yaml's metrics files "
                            f"(MODEL.SPLIT.NAME, e.g. torch_mlp.test.f1, or MODEL.test_acc; "
                            f"models: {models})")


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


def _leaderboard(succeeded: list[str], overrides: dict[str, list[str]], metric: str,
                 log) -> None:
    rows = [(value_at(trial_metrics(name), metric), name) for name in succeeded]
    rows.sort(key=lambda row: (row[0] is None, -(row[0] or 0.0), row[1]))
    log.info("leaderboard by %s:", metric)
    for rank, (value, name) in enumerate(rows, 1):
        log.info("%2d. %s  %s  %s", rank, "n/a" if value is None else f"{value:.4f}", name,
                 " ".join(overrides[name]))
