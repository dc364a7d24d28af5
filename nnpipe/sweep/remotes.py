"""What a sweep asks of its two remotes, checked before any trial runs.

Trials clone the git remote and pull HEAD's outputs from the DVC remote; a trial is done when
its experiment ref is on the git remote and every output of that experiment is on the DVC
remote. Each problem is one line naming the remote and the command that fixes it.
"""
from __future__ import annotations

import logging
import os
import subprocess
from typing import NamedTuple

from nnpipe.core.errors import PipelineError, short

GIT_SECONDS = 30  # a git remote that does not answer within this is unreachable


class Setup(NamedTuple):
    commit: str
    git_remote: str
    git_url: str
    dvc_remote: str
    dvc_remote_url: str


def git(*args: str, what: str = "") -> str:
    """``git ARGS``'s output; on failure a one-line error led by ``what`` (default the
    command) with git's first ``fatal:``/``error:`` line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=GIT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"{what or 'git ' + args[0]}: no answer in {GIT_SECONDS} s") from None
    if proc.returncode:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith(("fatal:", "error:"))),
                     lines[0] if lines else f"exit code {proc.returncode}")
        first = first.split(":", 1)[1].strip() if first.startswith(("fatal:", "error:")) else first
        raise PipelineError(f"{what or 'git ' + ' '.join(args[:2])}: {short(first, 200)}")
    return proc.stdout.strip()


def check_setup(git_remote: str, dvc_remote: str | None) -> Setup:
    """The sweep's commit and remotes, or a one-line error: a remote missing or
    unreachable, a dirty workspace, HEAD not pushed, or HEAD's outputs not on the DVC remote."""
    try:
        git_url = git("remote", "get-url", git_remote)
    except PipelineError:
        raise PipelineError(f"git remote '{short(git_remote)}' not found "
                            "(add one: git remote add origin URL)") from None
    name, url = _dvc_remote(dvc_remote)
    if git("status", "--porcelain", "--untracked-files=no"):
        raise PipelineError("the workspace has uncommitted changes: commit them, then sweep "
                            "(trials run the committed code and params)")
    commit = git("rev-parse", "HEAD")
    heads = git("ls-remote", git_url, what=f"git remote '{git_remote}' ({short(git_url)})")
    if commit not in {line.split()[0] for line in heads.splitlines() if line.strip()}:
        raise PipelineError(f"HEAD {commit[:7]} is not on git remote '{git_remote}': "
                            f"git push {git_remote} HEAD first")
    new, lost = missing_outputs([commit], name)[commit]
    if new or lost:
        command = "dvc push" if not lost else "dvc repro, then dvc push"
        raise PipelineError(f"{new + lost} output file(s) of HEAD {commit[:7]} are not on DVC "
                            f"remote '{name}', where trials pull them from: run {command}")
    return Setup(commit, git_remote, git_url, name, url)


def _dvc_remote(name: str | None) -> tuple[str, str]:
    """The DVC remote's name and URL (DVC resolves a relative path), read through DVC."""
    from dvc.repo import Repo

    with Repo() as repo:
        config = repo.config
    remotes = config.get("remote", {})
    name = name or config.get("core", {}).get("remote")
    if not name:
        raise PipelineError("no DVC remote: give --dvc-remote NAME or set a default "
                            "(dvc remote add -d NAME URL)")
    if name not in remotes:
        raise PipelineError(f"DVC remote '{short(name)}' not found (dvc remote list)")
    return name, remotes[name]["url"]


def missing_outputs(revs: list[str], remote: str) -> dict[str, tuple[int, int]]:
    """Per commit of ``revs`` (all local), how many of its cached output files (directory
    listings included) the DVC remote lacks: (in the local cache, in no cache at all)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    logging.getLogger("dvc").setLevel(logging.ERROR)  # "missing cache" warnings: counted here
    found: dict[str, tuple[int, int]] = {}
    try:
        with Repo() as repo:
            for rev in repo.brancher(revs=revs, workspace=False, sha_only=True):
                objs = {out.hash_info for out in repo.index.outs
                        if out.use_cache and out.hash_info}
                for odb, used in repo.index.used_objs(remote=remote, force=True,
                                                      push=True).items():
                    if odb is None:  # imports from other repositories are theirs
                        objs |= used
                status = repo.cloud.status(objs, remote=remote)
                found[rev] = (len(status.new), len(status.missing))
    except DvcException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PipelineError(f"DVC remote '{remote}': {short(first, 200)}") from None
    return found


def exp_refs(setup: Setup) -> dict[str, str]:
    """The experiments of the sweep's commit on the git remote: name -> commit."""
    prefix = _prefix(setup.commit)
    refs = git("ls-remote", setup.git_url, f"{prefix}*",
               what=f"git remote '{setup.git_remote}'")
    pairs = (line.split() for line in refs.splitlines() if line.strip())
    return {ref[len(prefix):]: sha for sha, ref in pairs}


def fetch_refs(setup: Setup, names: list[str]) -> None:
    """Copy these experiment refs from the git remote (as ``dvc exp pull`` does)."""
    prefix = _prefix(setup.commit)
    git("fetch", "-q", "--no-tags", setup.git_url,
        *[f"+{prefix}{name}:{prefix}{name}" for name in names],
        what=f"git fetch {setup.git_remote}")


def remove_refs(setup: Setup, names: list[str]) -> None:
    """Delete these experiment refs from the git remote and from this repository."""
    prefix = _prefix(setup.commit)
    git("push", "-q", setup.git_url, *[f":{prefix}{name}" for name in names],
        what=f"git push {setup.git_remote} (removing partial experiments)")
    for name in names:
        git("update-ref", "-d", f"{prefix}{name}")


def _prefix(commit: str) -> str:
    return f"refs/exps/{commit[:2]}/{commit[2:]}/"
