"""What a sweep asks of its two remotes, checked before any trial runs.

Trials clone the git remote and pull HEAD's outputs from the DVC remote; a trial is done when
its experiment ref is on the git remote and every object of its outputs (each file, and each
file a directory's listing names) is on the DVC remote, asked of the remote by its hash. Each
problem is one line naming the remote and the command that fixes it.
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
    missing = missing_outputs([commit], name)[commit]
    if missing.cached or missing.lost:
        repair(name, missing, push=False)  # so that `dvc push` sends what a listing claims
        command = "dvc push" if not missing.lost else "dvc repro, then dvc push"
        raise PipelineError(f"{len(missing.cached) + len(missing.lost)} output file(s) of HEAD "
                            f"{commit[:7]} are not on DVC remote '{name}', where trials pull "
                            f"them from: run {command}")
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


class Missing(NamedTuple):
    """The objects (hash name, oid) of a commit's outputs that the DVC remote lacks: those in
    the local cache, those in no cache; and the remote's directory listings among them whose
    files are not all there (DVC takes a listing's files on trust: `dvc push` would send none)."""
    cached: list[tuple[str, str]]
    lost: list[tuple[str, str]]
    listings: list[tuple[str, str]]


def missing_outputs(revs: list[str], remote: str) -> dict[str, Missing]:
    """Per commit of ``revs`` (all local), what the DVC remote lacks of its dvc.lock outputs:
    every cached output's object, a directory's listing and each file it lists, each asked of
    the remote itself (never of an index of what it held)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    logging.getLogger("dvc").setLevel(logging.ERROR)  # "missing cache" warnings: counted here
    found: dict[str, Missing] = {}
    try:
        with Repo() as repo:
            for rev in repo.brancher(revs=revs, workspace=False, sha_only=True):
                outs = {out.hash_info for out in repo.index.outs
                        if out.use_cache and out.hash_info}
                found[rev] = _missing(repo, remote, outs)
    except DvcException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PipelineError(f"DVC remote '{remote}': {short(first, 200)}") from None
    return found


def _missing(repo, remote: str, outs) -> Missing:
    objs = {(hi.name, hi.value) for hi in outs}
    listed: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for hi in outs:
        if hi.isdir:
            listed[(hi.name, hi.value)] = files = _listing(repo, remote, hi)
            objs |= files
    present = set()
    for name in {name for name, _ in objs}:
        odb = repo.cloud.get_remote_odb(remote, "status", hash_name=name)
        present |= {(name, oid) for oid in odb.oids_exist([o for n, o in objs if n == name])}
    absent = sorted(objs - present, key=lambda obj: (obj[1].endswith(".dir"), obj))
    cached = [obj for obj in absent if _cache(repo, obj[0]).exists(obj[1])]
    return Missing(cached, [obj for obj in absent if obj not in cached],
                   sorted(d for d, files in listed.items() if d in present and files - present))


def _listing(repo, remote: str, hash_info) -> set[tuple[str, str]]:
    """The files a directory's listing names, read from the local cache or the remote; none
    when neither holds it (then the listing itself is missing)."""
    from dvc_data.hashfile.tree import Tree
    from dvc_objects.errors import ObjectFormatError

    for odb in (_cache(repo, hash_info.name),
                repo.cloud.get_remote_odb(remote, "status", hash_name=hash_info.name)):
        try:
            return {(entry.name, entry.value) for _, _, entry in Tree.load(odb, hash_info)}
        except (FileNotFoundError, ObjectFormatError):
            continue
    return set()


def _cache(repo, hash_name: str):
    from dvc.cachemgr import LEGACY_HASH_NAMES

    return repo.cache.legacy if hash_name in LEGACY_HASH_NAMES else repo.cache.local


def repair(remote: str, missing: Missing, push: bool) -> None:
    """With ``push``, send the cached objects now (files before listings); without, delete the
    remote's listings whose files are not all there, so that `dvc push` sends those files."""
    from dvc.repo import Repo

    try:
        with Repo() as repo:
            for name, oid in [] if push else missing.listings:
                odb = repo.cloud.get_remote_odb(remote, "push", hash_name=name)
                odb.fs.rm(odb.oid_to_path(oid))
            for name, oid in missing.cached if push else []:
                odb = repo.cloud.get_remote_odb(remote, "push", hash_name=name)
                cache = _cache(repo, name)
                odb.add(cache.oid_to_path(oid), cache.fs, oid, check_exists=False)
    except Exception as exc:  # a remote's own errors (OSError, botocore, ...) have no base
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PipelineError(f"DVC remote '{remote}': cannot repair it: {short(first, 200)}") \
            from None


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
