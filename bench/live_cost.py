"""DVCLive's cost in the training stage (``python bench/run.py --live-cost``)."""
from __future__ import annotations

import tempfile
import time


def live_cost(steps: int = 100) -> str:
    """What the training stage's DVCLive logging (stages.train.log_curves: four figures and a
    summary per logged epoch) costs: a run of 1 step, then one of ``steps``, in this repo."""
    from nnpipe.models import CURVES
    from stages.train import log_curves

    rows = [{"epoch": e, **{name: 1.0 / (e + 1) for name in CURVES}} for e in range(steps)]
    seconds = {}
    for n in (1, 1, steps):  # the first run imports DVCLive (and DVC)
        with tempfile.TemporaryDirectory(prefix="nnpipe-live-") as tmp:
            start = time.perf_counter()
            log_curves(tmp, rows[:n], rows[n - 1])
            seconds[n] = time.perf_counter() - start
    per_step = (seconds[steps] - seconds[1]) / (steps - 1)
    return ("## DVCLive: cost\n\n| measure | value |\n|---|---:|\n"
            f"| a run of 1 logged step (Live's start and end) | {seconds[1] * 1000:.0f} ms |\n"
            f"| per logged step ({steps} steps) | {per_step * 1000:.2f} ms |\n")
