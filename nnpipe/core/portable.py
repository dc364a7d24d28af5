"""Portable math: the same bytes on every x86-64 CPU with AVX2, by pinning the math kernels.

NumPy, OpenBLAS, PyTorch's ATen and MKL each pick a code path for the CPU they run on
(AVX-512 or AVX2 SIMD, a vendor branch, a blocking for the thread count), and different
paths round differently. With ``math.portable: true`` (the default in params.yaml) a stage
pins every one of them before numpy or torch loads, overriding the caller's environment:

- NumPy's SIMD dispatch to the X86_V3 (AVX2) targets, via ``NPY_ENABLE_CPU_FEATURES``;
- OpenBLAS's kernel to Haswell (AVX2) and one thread;
- ATen's dispatch to its AVX2 kernels, MKL to its COMPATIBLE (vendor-neutral) branch, one
  thread each; oneDNN is capped at AVX2 (torch uses none of it for these models).

Which kernels these pins give is checked kernel by kernel, on emulated CPUs of both vendors and
against a real Intel CPU's results, by the fingerprint tool (docs/portable-math.md).

``math.portable: false`` leaves the caller's environment alone: native kernels, faster at
scale, with results that depend on the CPU. This module imports neither numpy nor torch: it
must run before them. If they are already loaded, :func:`pin` checks that the kernels in
effect are the pinned ones and raises a PipelineError otherwise.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Mapping, MutableMapping

from nnpipe.core.errors import PipelineError

PARAM = "math.portable"
# Set whatever the caller's environment says (pinning wins over a conflicting variable).
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
X86_ENV = {
    "NPY_ENABLE_CPU_FEATURES": "X86_V3",   # numpy: baseline + AVX2/FMA3 loops, no AVX-512
    "OPENBLAS_CORETYPE": "Haswell",        # OpenBLAS: the AVX2 kernels, on Intel and AMD
    "ATEN_CPU_CAPABILITY": "avx2",         # ATen: its AVX2 kernels (no AVX-512)
    "MKL_CBWR": "COMPATIBLE",              # MKL: the one branch it promises across vendors
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
}
# Removed: they would steer a pinned library off its pinned path.
CONFLICTING_ENV = ("NPY_DISABLE_CPU_FEATURES", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
                   "GOTO_NUM_THREADS")
# X86_V3 as numpy defines it, in /proc/cpuinfo's spelling.
AVX2_FLAGS = ("avx", "avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "f16c")


def is_x86_64(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def pinned_env(machine: str | None = None) -> dict[str, str]:
    """The variables portable mode sets on this machine's architecture."""
    return {**THREADS_ENV, **(X86_ENV if is_x86_64(machine) else {})}


def apply(environ: MutableMapping[str, str], machine: str | None = None) -> None:
    """Pin ``environ`` in place: set every pinned variable, drop the conflicting ones."""
    for name in CONFLICTING_ENV:
        environ.pop(name, None)
    environ.update(pinned_env(machine))


def missing_cpu_flags(cpuinfo: str) -> list[str]:
    """The AVX2-level flags a /proc/cpuinfo text lacks (empty: portable math can run)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in AVX2_FLAGS if flag not in flags]
    return []


def _check_cpu() -> None:
    if not is_x86_64() or not os.path.exists("/proc/cpuinfo"):
        return
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
        missing = missing_cpu_flags(handle.read())
    if missing:
        raise PipelineError(f"{PARAM}=true needs an x86-64 CPU with AVX2; this one lacks "
                            f"{', '.join(missing)}: set {PARAM} to false in params.yaml")


def pin(portable: bool) -> None:
    """Pin this process's math kernels (portable) or leave them native.

    Call before numpy/torch load. When they already have (a warm server's fork, an
    in-process caller), check the kernels they run instead.
    """
    if not portable:
        return
    _check_cpu()
    apply(os.environ)
    if "numpy" in sys.modules or "torch" in sys.modules:
        wrong = mismatches(in_effect())
        if wrong:
            raise PipelineError(f"{PARAM}=true, but numpy/torch were loaded before the kernels "
                                f"were pinned ({'; '.join(wrong)}): run the stage in a new "
                                "process")


def in_effect(load_torch: bool = False) -> dict[str, str]:
    """The kernels this process runs, read from the loaded libraries (loads numpy)."""
    import importlib

    importlib.import_module("numpy")  # threadpoolctl reports only loaded libraries
    if load_torch:
        importlib.import_module("torch")
    import threadpoolctl
    from numpy._core import _multiarray_umath as umath

    found = {"numpy_simd": ",".join(t for t in umath.__cpu_dispatch__
                                    if umath.__cpu_features__.get(t)) or "baseline"}
    for lib in threadpoolctl.threadpool_info():
        if lib.get("internal_api") == "openblas":
            found["openblas_core"] = str(lib.get("architecture"))
            found["openblas_threads"] = str(lib.get("num_threads"))
    if "torch" in sys.modules:
        loaded = sys.modules["torch"]
        found["torch_capability"] = loaded.backends.cpu.get_cpu_capability()
        found["torch_threads"] = str(loaded.get_num_threads())
    return found


def expected(machine: str | None = None) -> dict[str, str]:
    """What :func:`in_effect` reports when the kernels are pinned."""
    if not is_x86_64(machine):
        return {"openblas_threads": "1"}
    return {"numpy_simd": "X86_V3", "openblas_core": "Haswell", "openblas_threads": "1",
            "torch_capability": "AVX2"}


def mismatches(found: Mapping[str, str], machine: str | None = None) -> list[str]:
    """``name is X, want Y`` for each kernel in ``found`` that is not the pinned one."""
    return [f"{name} is {found[name]}, want {want}"
            for name, want in expected(machine).items()
            if name in found and found[name].lower() != want.lower()]


def main() -> None:
    """``python -m nnpipe.core.portable [--pin]``: print the kernels in effect, one per line."""
    if sys.argv[1:] == ["--pin"]:
        pin(True)
    for name, value in sorted(in_effect(load_torch=True).items()):
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
