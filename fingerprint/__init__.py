"""Kernel fingerprint: a hash of every math kernel the pipeline computes with, under portable math.

    python -m fingerprint > fingerprint.json       # this CPU's fingerprint
    python -m fingerprint --compare OTHER.json     # kernel by kernel against another CPU's
    python -m fingerprint record                   # re-record which kernels cover training's ops

Two CPUs whose fingerprints agree compute these kernels bit for bit alike; a kernel whose
hash differs is where their results part. Every input is built from integers, so it is the
same everywhere, and every kernel runs at the shapes of the default pipeline: the spiral
(N=1050 train rows, D=2, H=100, C=3), overfit_random (N=105, H=302), evaluate's splits,
plot_model's 101 x 101 grid. Covered: torch's forward and backward ops, initializers, dropout,
permutations and fused Adam (the training stages); NumPy's matmul, elementwise and reduction
kernels (the NumPy MLP, evaluate, predict); the legacy RandomState draws, sin/cos and the
scikit-learn fits (fetch, split, scale_encode); a rendered figure (the plot stages).

``APPROXIMATE`` lists the kernels kept as a negative control: torch.sqrt on a float32 tensor
(MKL's vector math, not correctly rounded) and the torch.optim.Adam steps built on it. They
differ between CPUs, and no stage uses them (training uses ``fused=True``; ``TORCH_OPS``,
recorded by profiling training runs and the kernels, maps each op a training run calls to the
kernels covering it). ``--compare`` reports them apart and fails only on the others.

Tooling beside the library: it imports nnpipe, nnpipe never imports it.
"""
from __future__ import annotations

from typing import Any

from fingerprint.kernels import compute, digest
from fingerprint.ops import (APPROXIMATE, APPROXIMATE_OPS, DATA_OPS, TORCH_OPS, is_approximate,
                             op_keys)

__all__ = ["APPROXIMATE", "APPROXIMATE_OPS", "DATA_OPS", "TORCH_OPS", "compare", "compute",
           "digest", "is_approximate", "op_keys"]


def compare(mine: dict[str, Any], other: dict[str, Any]) -> tuple[list[str], list[str], int]:
    """(kernels that differ, approximate kernels that differ, kernels compared): the keys
    both fingerprints hold, ``_``-prefixed entries (the code paths in effect) left out."""
    common = sorted(k for k in mine.keys() & other.keys() if not k.startswith("_"))
    differ = [k for k in common if mine[k] != other[k]]
    return ([k for k in differ if not is_approximate(k)],
            [k for k in differ if is_approximate(k)], len(common))
