"""One trial of a sweep, as a Ray task runs it on any machine.

Standard library only: the driver ships this module to the workers by value, so a worker
needs the requirements and the two remotes, not a copy of nnpipe. A trial clones the git
remote at the sweep's commit into a temporary directory, runs ``dvc exp run --pull
--allow-missing`` with its overrides under a name derived from commit and overrides, pushes
the outputs to the DVC remote and only then the experiment's git ref, so a ref on the git
remote always has its outputs on the DVC remote. The trials of one machine share one warm
server (the pipeline's warm start). A trial returns its metrics; a failure comes back as one
line, not an exception, so Ray retries only trials whose worker died. A cancelled trial
(KeyboardInterrupt, as ``ray.cancel`` raises it) kills its running step and removes its clone
before it ends.
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

CLONE_PREFIX = "nnpipe-trial-"  # the temporary clone: <tempdir>/nnpipe-trial-XXXX/repo
WARM_IDLE = "60"  # seconds a machine's warm server outlives the last stage of its trials
# A step dies with the Ray worker that runs it (a worker killed outright): it asks the kernel
# for SIGKILL when its parent (argv[1]) dies (PR_SET_PDEATHSIG), then becomes the step. A
# wrapper, not preexec_fn, which is unsafe in a process with threads such as a Ray worker.
DIE_WITH_PARENT = ("import ctypes, os, signal, sys\n"
                   "try:\n"
                   "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
                   "except (OSError, AttributeError):\n"
                   "    pass\n"
                   "if os.getppid() != int(sys.argv[1]):\n"
                   "    os._exit(137)\n"
                   "os.execvp(sys.argv[2], sys.argv[2:])\n")


def trial_name(commit: str, overrides: list[str]) -> str:
    """A deterministic experiment name: the same commit and overrides, the same name."""
    digest = hashlib.sha256(json.dumps([commit, sorted(overrides)]).encode()).hexdigest()
    return f"sweep-{commit[:7]}-{digest[:8]}"


def steps(spec: dict[str, Any], tmp: str) -> list[tuple[str, list[str], str]]:
    """(what, argv, cwd) of each step of the trial ``spec`` in the directory ``tmp``."""
    repo = os.path.join(tmp, "repo")
    dvc = [sys.executable, "-m", "dvc"]
    sets = [arg for override in spec["overrides"] for arg in ("-S", override)]
    return [
        ("git clone", ["git", "clone", "-q", "--no-checkout", spec["git_url"], repo], tmp),
        ("git checkout", ["git", "checkout", "-q", spec["commit"]], repo),
        ("dvc remote add", [*dvc, "remote", "add", "--local", "--force", "--default",
                            spec["dvc_remote"], spec["dvc_remote_url"]], repo),
        ("dvc exp run", [*dvc, "exp", "run", "--pull", "--allow-missing",
                         "-n", spec["name"], *sets], repo),
        ("dvc push", [*dvc, "push", "-r", spec["dvc_remote"]], repo),  # outputs first,
        ("dvc exp push", [*dvc, "exp", "push", "--no-cache", "origin", spec["name"]], repo),
    ]


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec``: git_url, commit, name, overrides, dvc_remote, dvc_remote_url."""
    start = time.monotonic()
    result = {"name": spec["name"], "overrides": spec["overrides"], "ok": False,
              "error": "", "metrics": {}, "node": _node()}
    with tempfile.TemporaryDirectory(prefix=CLONE_PREFIX) as tmp:
        for what, argv, cwd in steps(spec, tmp):
            failure = _run(argv, cwd, _env(), tmp)
            if failure:
                result["error"] = f"{what}: {failure}"
                break
        else:
            result["metrics"] = _metrics(os.path.join(tmp, "repo"))
            result["ok"] = True
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def _env() -> dict[str, str]:
    """The steps' environment: the trials of one machine share one warm server (the
    pipeline's warm start), which exits WARM_IDLE seconds after their last stage."""
    warm = os.path.join(tempfile.gettempdir(), f"nnpipe-sweep-warm-{os.getuid()}")
    return {**os.environ, "NNPIPE_WARM_DIR": warm, "NNPIPE_WARM_IDLE": WARM_IDLE}


def _run(argv: list[str], cwd: str, env: dict[str, str], tmp: str) -> str:
    """Run a step; '' on success, else the one line that says why.

    The step runs in a session of its own and is waited for in short polls, so an interrupt
    (a cancelled trial) arrives within a fraction of a second and kills the step with every
    process it started before the clone is removed.
    """
    with tempfile.TemporaryFile(dir=tmp) as output:
        proc = subprocess.Popen([sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *argv],
                                cwd=cwd,
                                env=env, stdout=output, stderr=output,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            _kill_group(proc)
            raise
        if code == 0:
            return ""
        output.seek(0)
        text = output.read().decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ours = [line for line in lines if ": error: " in line]  # a stage's own one-line error
    theirs = [line for line in lines if line.startswith("ERROR")]
    return (ours or theirs or lines or [f"exit code {code}"])[-1][:300]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


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
