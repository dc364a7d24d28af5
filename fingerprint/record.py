"""``python -m fingerprint record``: which torch ops training calls, and which kernels cover each.

Profiles (torch.profiler) ``training.fit`` in every torch configuration the stages can be given
(RUNS), and each torch kernel of the fingerprint on its own (the ops run between two of its
hashes). An op training calls is covered by the exact kernels that call it too; an op only
approximate kernels call must never run in training. Writes OPS_FILE, which
``fingerprint.ops`` reads: nothing is listed by hand but the ops that compute nothing
(``fingerprint.ops.DATA_OPS``) and the approximate kernels.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from fingerprint import kernels
from fingerprint.ops import DATA_OPS, OPS_FILE, is_approximate

COMMAND = "python -m fingerprint record"


def _section(**changes: Any) -> Any:
    from nnpipe import params

    raw = {"backend": "torch", "activation": "relu", "hidden_dims": [8, 4], "lr": 0.05,
           "epochs": 2, "batch_size": None, "log_every": 100, "dropout_p": 0.0,
           "class_weight": "balanced", "keep": "last", "patience": None, "init": "default"}
    return params.build_section("train_m", {**raw, **changes})


def runs() -> dict[str, Any]:
    """The torch configurations the stages can be given: dropout, init, batches, activation."""
    return {"relu-dropout-xavier-minibatch": _section(dropout_p=0.1, init="xavier_normal",
                                                      batch_size=16),
            "identity-full-batch": _section(activation="identity"),
            "identity-dropout-xavier-minibatch": _section(activation="identity", dropout_p=0.3,
                                                          init="xavier_normal", batch_size=16)}


def aten_ops(work: Callable[[], Any]) -> set[str]:
    """The ATen ops ``work()`` calls, as torch.profiler names them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        work()
    return {event.name for event in prof.events() if event.name.startswith("aten::")}


def training_ops() -> dict[str, set[str]]:
    """The ATen ops each training.fit run of ``runs()`` calls."""
    import numpy as np

    from nnpipe import preprocess, training

    rng = np.random.RandomState(0)
    X, labels = rng.randn(60, 2), np.array(list("abc" * 20))
    state = preprocess.fit(X, labels, ["X1", "X2"], rows=90)
    y = state.encode(labels)
    Z = state.transform(X)
    data = preprocess.TrainData(Z, y, Z, y)  # training.fit gives it its weights
    return {name: aten_ops(lambda hp=hp: training.fit("m", hp, state, data, seed=0))
            for name, hp in runs().items()}


class _Profiled(dict):
    """A fingerprint's dict that profiles the ops run before each hash is stored under its key."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, set[str]] = {}
        self._start()

    def _start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU])
        self._prof.__enter__()

    def stop(self) -> set[str]:
        self._prof.__exit__(None, None, None)
        return {e.name for e in self._prof.events() if e.name.startswith("aten::")}

    def __setitem__(self, key: str, value: Any) -> None:
        self.ops[key] = self.stop()
        super().__setitem__(key, value)
        self._start()


def kernel_ops() -> dict[str, set[str]]:
    """The ATen ops each torch kernel of the fingerprint calls."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = _Profiled()
    try:
        kernels.torch_kernels(out)
        kernels.training_kernels(out)
    finally:
        out.stop()
    return out.ops


def derive(training: dict[str, set[str]], by_kernel: dict[str, set[str]]) -> dict[str, Any]:
    """The contents of OPS_FILE: each op training calls, with the exact kernels that call it,
    and each op only approximate kernels call, with those."""
    called = set().union(*training.values())
    exact: dict[str, list[str]] = {}
    approximate: dict[str, list[str]] = {}
    for key, ops in sorted(by_kernel.items()):
        for op in ops - DATA_OPS:
            (approximate if is_approximate(key) else exact).setdefault(op, []).append(key)
    return {"command": COMMAND,
            "training": {run: sorted(ops) for run, ops in sorted(training.items())},
            "torch_ops": {op: exact.get(op, []) for op in sorted(called - DATA_OPS)},
            "approximate_ops": {op: keys for op, keys in sorted(approximate.items())
                                if op not in exact}}


def record() -> dict[str, Any]:
    return derive(training_ops(), kernel_ops())


def write(recorded: dict[str, Any], path: Path = OPS_FILE) -> None:
    path.write_text(json.dumps(recorded, indent=1) + "\n", encoding="utf-8")
