"""The Ray side of a sweep: check or start Ray, run each trial as a task, stop cleanly.

Without an address the sweep starts a Ray of its own (``address="local"``), even when
``ray start`` has recorded a cluster on this machine; ``--address auto`` joins that one.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from nnpipe.core.errors import PipelineError, short
from sweep import trial

RETRIES = 3  # times Ray re-runs a trial whose worker died (a trial's own failure is a result)
PROBE_SECONDS = 5  # a cluster's address must accept a TCP connection within this
HEALTH_SECONDS = 25  # and its GCS must answer `ray health-check` within this
CANCEL_SECONDS = 30.0  # cancelled trials get this long to kill their steps and remove clones


def check_address(address: str) -> None:
    """A one-line error unless a Ray cluster answers at ``address`` within seconds (Ray
    itself would retry for minutes): a TCP connection first, then ``ray health-check``."""
    host_port = address[len("ray://"):].split("/")[0] if address.startswith("ray://") \
        else address
    host, _, port = host_port.rpartition(":")
    if host and port.isdigit():
        try:
            with socket.create_connection((host.strip("[]"), int(port)), PROBE_SECONDS):
                pass
        except OSError as exc:
            reason = "no answer" if isinstance(exc, socket.timeout) else _one_line(exc)
            raise PipelineError(_unreachable(address, reason)) from None
    if address.startswith("ray://"):  # a Ray Client server, not a GCS: Ray checks it
        return
    argv = [sys.executable, "-m", "ray.scripts.scripts", "health-check", "--address", address,
            "--skip-version-check"]
    env = {**os.environ, **{f"RAY_{name}": str(PROBE_SECONDS) for name in (
        "gcs_rpc_server_connect_timeout_s", "gcs_rpc_server_reconnect_timeout_s",
        "gcs_server_request_timeout_seconds")}}  # the probe's own patience, not the sweep's
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=HEALTH_SECONDS,
                              env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise PipelineError(_unreachable(address, f"no answer in {HEALTH_SECONDS} s")) from None
    if proc.returncode:
        errors = re.findall(r"^\w[\w.]*(?:Error|Exception): (.+)$", proc.stderr, re.MULTILINE)
        raise PipelineError(_unreachable(address, errors[-1] if errors
                                         else "its GCS did not answer"))


def _unreachable(address: str, reason: str) -> str:
    return (f"--address {short(address)}: no Ray cluster answers there ({short(reason, 200)}); "
            "start one with `ray start --head`, or drop --address to run on this machine")


def run(specs: list[dict[str, Any]], address: str | None, jobs: int,
        on_result: Callable[[dict[str, Any], int], None], log) -> list[dict[str, Any]]:
    """Run every trial; call ``on_result(result, finished)`` as each ends; return the results.

    A local Ray (``address`` None) has ``jobs`` CPUs and no dashboard and is shut down at
    the end. On Ctrl-C the running trials are cancelled, given CANCEL_SECONDS to remove
    their clones, then killed, and the Ray this started is stopped.
    """
    if not specs:
        return []
    import ray

    ray.cloudpickle.register_pickle_by_value(trial)  # workers need no copy of nnpipe
    pending: dict[Any, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    try:  # from init on: a Ctrl-C even during start-up stops the Ray this started
        _connect(ray, address, jobs, log)
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(trial.run_trial)
        pending = {task.remote(spec): spec for spec in specs}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # e.g. its worker died RETRIES + 1 times
                result = {"name": spec["name"], "overrides": spec["overrides"], "ok": False,
                          "error": _one_line(exc), "metrics": {}, "node": "", "seconds": 0.0}
            results.append(result)
            on_result(result, len(results))
    except KeyboardInterrupt:
        _cancel(ray, list(pending))
        raise
    finally:
        ray.shutdown()
    return results


def _connect(ray, address: str | None, jobs: int, log) -> None:
    try:
        if address is None:
            ray.init(address="local", num_cpus=jobs, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PipelineError(f"Ray {address or 'local'}: {_one_line(exc)}") from None
    nodes = sum(node["Alive"] for node in ray.nodes())
    cpus = int(ray.cluster_resources().get("CPU", 0))
    where = "a local Ray" if address is None else f"the Ray cluster at {address}"
    log.info("running on %s: %d node(s), %d CPU(s)", where, nodes, cpus)


def _cancel(ray, refs: list[Any]) -> None:
    """Interrupt the running trials (each removes its clone), then kill what is left."""
    for ref in refs:
        ray.cancel(ref)
    if refs:
        _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_SECONDS)
        for ref in left:
            ray.cancel(ref, force=True)


def _one_line(what: object) -> str:
    """The last non-empty line of an exception's or a program's message."""
    lines = [line.strip() for line in str(what).splitlines() if line.strip()]
    return (lines[-1] if lines else type(what).__name__ if isinstance(what, BaseException)
            else "")[:300]
