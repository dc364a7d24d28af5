"""Which fingerprint kernels cover each torch op training calls, read from the recorded OPS_FILE
(``python -m fingerprint record`` writes it; tests/test_fingerprint.py re-records and compares).

``TORCH_OPS`` maps every compute ATen op a torch training run calls (torch.profiler's names)
to the exact kernels that call it too, at every shape of the fingerprint; ``APPROXIMATE_OPS``
maps the ops only approximate kernels call to those kernels: no training run may call them.
"""
from __future__ import annotations

import json
from pathlib import Path

OPS_FILE = Path(__file__).with_name("ops.json")
# Not correctly rounded on real CPUs: expected to differ between CPU models, used by no stage.
APPROXIMATE = ("adam5", "adam5.foreach", "sqrt(float32")
# Ops that compute nothing: views, allocation, constant fills, copies (a dtype conversion
# copies inside aten::_to_copy, a compute op), scalar reads, integer ranges.
DATA_OPS = frozenset(f"aten::{name}" for name in (
    "view", "reshape", "t", "transpose", "expand", "as_strided", "slice", "narrow", "split",
    "detach", "lift_fresh", "resolve_conj", "resolve_neg", "empty", "empty_like",
    "empty_strided", "zeros", "zeros_like", "ones_like", "scalar_tensor", "fill_", "zero_",
    "copy_", "set_", "resize_", "item", "_local_scalar_dense", "arange"))


def is_approximate(key: str) -> bool:
    kernel = key.split(".", 1)[-1]
    return kernel in APPROXIMATE[:2] or kernel.startswith(APPROXIMATE[2])


def _load() -> dict:
    try:
        return json.loads(OPS_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:  # while ``python -m fingerprint record`` makes it
        return {"torch_ops": {}, "approximate_ops": {}}


_RECORDED = _load()
TORCH_OPS: dict[str, list[str]] = _RECORDED["torch_ops"]
APPROXIMATE_OPS: dict[str, list[str]] = _RECORDED["approximate_ops"]


def op_keys(op: str) -> list[str]:
    """The fingerprint keys that cover torch op ``op`` (TORCH_OPS or APPROXIMATE_OPS)."""
    return TORCH_OPS.get(op) or APPROXIMATE_OPS[op]
