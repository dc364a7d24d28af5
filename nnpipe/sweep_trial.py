"""One trial of a sweep, as a Ray task runs it on any machine (nnpipe.sweep).

Standard library only: the driver ships this module to the workers by value, so a worker
needs the requirements and the two remotes, not a copy of nnpipe. A trial clones the git
remote at the sweep's commit into a temporary directory, runs ``dvc exp run --pull
--allow-missing`` with its overrides under a name derived from commit and overrides, pushes
the experiment (git refs and outputs) and returns its metrics. A failure comes back as one
line, not an exception, so Ray retries only trials whose worker died.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any


def trial_name(commit: str, overrides: list[str]) -> str:
    """A deterministic experiment name: the same commit and overrides, the same name."""
    digest = hashlib.sha256(json.dumps([commit, sorted(overrides)]).encode()).hexdigest()
    return f"sweep-{commit[:7]}-{digest[:8]}"


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec``: git_url, commit, name, overrides, dvc_remote, dvc_remote_url."""
    start = time.monotonic()
    result = {"name": spec["name"], "overrides": spec["overrides"], "ok": False,
              "error": "", "metrics": {}, "node": _node()}
    with tempfile.TemporaryDirectory(prefix="nnpipe-trial-") as tmp:
        repo = os.path.join(tmp, "repo")
        env = {**os.environ, "NNPIPE_WARM_DIR": os.path.join(tmp, "warm"),
               "NNPIPE_WARM_IDLE": "30"}
        dvc = [sys.executable, "-m", "dvc"]
        sets = [arg for override in spec["overrides"] for arg in ("-S", override)]
        steps = [
            ("git clone", ["git", "clone", "-q", "--no-checkout", spec["git_url"], repo], tmp),
            ("git checkout", ["git", "checkout", "-q", spec["commit"]], repo),
            ("dvc remote add", [*dvc, "remote", "add", "--local", "--force", "--default",
                                spec["dvc_remote"], spec["dvc_remote_url"]], repo),
            ("dvc exp run", [*dvc, "exp", "run", "--pull", "--allow-missing",
                             "-n", spec["name"], *sets], repo),
            ("dvc exp push", [*dvc, "exp", "push", "-r", spec["dvc_remote"], "origin",
                              spec["name"]], repo),
        ]
        try:
            for what, argv, cwd in steps:
                failure = _run(argv, cwd, env)
                if failure:
                    result["error"] = f"{what}: {failure}"
                    break
            else:
                result["metrics"] = _metrics(repo)
                result["ok"] = True
        finally:
            if os.path.isdir(os.path.join(repo, "stages")):  # the trial's own warm servers
                subprocess.run([sys.executable, "-m", "stages", "--stop"], cwd=repo, env=env,
                               capture_output=True, check=False)
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def _run(argv: list[str], cwd: str, env: dict[str, str]) -> str:
    """Run a step; '' on success, else the one line that says why."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          preexec_fn=_die_with_parent, check=False)
    if proc.returncode == 0:
        return ""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    ours = [line for line in lines if ": error: " in line]  # a stage's own one-line error
    theirs = [line for line in lines if line.startswith("ERROR")]
    return (ours or theirs or lines or [f"exit code {proc.returncode}"])[-1][:300]


def _die_with_parent() -> None:
    """A step dies with the Ray worker that runs it (a cancelled or killed trial)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _metrics(repo: str) -> dict[str, Any]:
    """Every metrics file of the experiment, merged: ``{model: {split: {name: value}}}``."""
    out = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    merged: dict[str, Any] = {}
    for files in json.loads(out).values():
        for content in files.get("data", {}).values():
            deep_merge(merged, content.get("data", {}))
    return merged


def deep_merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Merge ``more`` into ``into`` key by key (metrics files share their top-level keys)."""
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def _node() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # not in a Ray worker
        return ""
