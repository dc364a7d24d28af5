"""The Ray side of nnpipe.sweep: start (or join) Ray, run each trial as a task, stop cleanly."""
from __future__ import annotations

from typing import Any, Callable

RETRIES = 3  # times Ray re-runs a trial whose worker died (a trial's own failure is a result)


def run(specs: list[dict[str, Any]], address: str | None, jobs: int,
        on_result: Callable[[dict[str, Any], int], None]) -> list[dict[str, Any]]:
    """Run every trial; call ``on_result(result, finished)`` as each ends; return the results.

    A local Ray (``address`` None) has ``jobs`` CPUs, no dashboard, and is shut down at the
    end or on Ctrl-C, which first cancels the running trials.
    """
    if not specs:
        return []
    import ray

    from nnpipe import sweep_trial

    ray.cloudpickle.register_pickle_by_value(sweep_trial)  # workers need no copy of nnpipe
    pending: dict[Any, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    try:  # from init on: a Ctrl-C even during start-up stops the Ray this started
        if address is None:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(sweep_trial.run_trial)
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
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()
    return results


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
