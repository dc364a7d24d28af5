"""Warm start: run a stage in a fork of a server that has already imported the heavy libraries.

Every stage of `dvc repro` is a new `python` process, and importing torch, scikit-learn or
matplotlib costs 0.5-1.5 s each time. ``python -m stages <stage> ARGS`` (each cmd in
dvc.yaml) asks a per-user server (warmstart.server), which imported them once, to fork. The
fork runs the stage with the launcher's argv, working directory, environment and
stdin/stdout/stderr; its exit status comes back to the launcher, and the fork ends when the
launcher does (docs/warm-start.md says what holds when which process is killed).

Only third-party libraries are preloaded. ``nnpipe`` and ``stages`` are imported afresh in
every fork from the launcher's working directory, so edited code always runs. A launcher that
finds no server runs its stage in-process, and starts a server once the stage begins its work
(warmstart.spawn). Servers are keyed by everything a preloaded library could have read at
import (warmstart.key), serve only callers they can serve exactly, and retire when the code
they loaded changes on disk (warmstart.snapshot); otherwise the stage runs cold. Any OSError
on the way runs the stage cold. The ``NNPIPE_WARM*`` variables are checked first
(warmstart.settings).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys

from warmstart import client, key, settings, spawn
from warmstart.protocol import is_server


def main(argv: list[str]) -> None:
    """``python -m stages <stage> ARGS``: run ``stages.<stage>`` warm or, failing that, here."""
    try:
        config = settings.read()
    except settings.SettingError as exc:
        print(f"stages: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if argv == ["--stop"]:
        raise SystemExit(stop_servers(config.dir))
    if not argv or argv[0].startswith("-") or not argv[0].isidentifier():
        _usage_error("usage: python -m stages <stage> [ARGS...] | python -m stages --stop")
    stage, args = argv[0], argv[1:]
    known = known_stages()
    if stage not in known:
        _usage_error(f"python -m stages: no stage '{stage}' (known: {', '.join(known)})")
    if "-h" in args or "--help" in args:
        run_here(stage, args)  # help needs no server, and starts none
    pin_math(args)  # before the key: the server loads numpy/torch with this environment
    if config.enabled:
        _run_warm(stage, args, config)
    run_here(stage, args)


def known_stages() -> list[str]:
    """The modules of the ``stages`` package, each a stage."""
    import pkgutil

    import stages

    return sorted(m.name for m in pkgutil.iter_modules(stages.__path__)
                  if not m.name.startswith("_"))


def _usage_error(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _run_warm(stage: str, args: list[str], config: settings.Settings) -> None:
    """Leave as the stage served by a server did; return to run it here (cold)."""
    try:
        found = key.for_caller(config.dir)
        conn = client.connect(found.path, config.timeout_s) if found else None
    except OSError:  # e.g. a directory where the socket belongs, a stopped server: run cold
        return
    if conn is not None:
        client.exit_like(client.request(conn, stage, args, config.timeout_s))
    elif found is not None:
        spawn.start_when_stage_begins(found, config.idle_s, config.timeout_s)


def pin_math(args: list[str]) -> None:
    """Pin the math kernels as the stage's params file says (``math.portable``), read as the
    runner reads it. A params file this cannot read leaves the environment alone: the runner
    then reports the problem itself, in one line, before it loads numpy."""
    from nnpipe.core.errors import PipelineError

    path = "params.yaml"
    for i, arg in enumerate(args):
        if arg == "--params" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--params="):
            path = arg.split("=", 1)[1]
    with contextlib.suppress(PipelineError):  # e.g. a CPU without AVX2: the runner says so
        _runner().pin_as(path)


def _runner():
    """stages/__main__.py, the runner (imported, not run: ``python -m stages`` runs it as
    ``__main__``)."""
    import importlib

    return importlib.import_module("stages.__main__")


def run_here(stage: str, args: list[str]) -> None:
    """Run ``stages.<stage>`` in this process, as a warm server's fork does; never returns."""
    _runner().execute(stage, args)


def stop_servers(base: str) -> int:
    """SIGTERM every server in this user's warm directory (``python -m stages --stop``)."""
    stopped = 0
    for name in sorted(os.listdir(base)) if key.warm_dir(base) else []:
        if name.endswith(".pid"):
            try:
                with open(os.path.join(base, name)) as handle:
                    pid = int(handle.read())
                if is_server(pid):
                    os.kill(pid, signal.SIGTERM)
                    stopped += 1
            except (OSError, ValueError):
                pass
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(base, name))
    print(f"stopped {stopped} warm server(s)")
    return 0
