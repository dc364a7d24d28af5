"""Portable math: the training stages give the same bytes on other CPUs, proven by running them
on emulated ones, and the pins win over whatever the caller's environment says.

QEMU user-mode emulation (`qemu-x86_64 -cpu NAME`, Debian's qemu-user; .ci/run installs it)
runs this machine's Python on an emulated AMD EPYC-Rome and an Intel Haswell: numpy, OpenBLAS,
MKL and torch see that CPU's vendor and features and pick their code paths for it. Under each,
the kernel fingerprint (fingerprint/) and the data and training stages at default sizes
must give what they give natively: every output md5, every exact kernel. QEMU computes the
approximate instructions (rsqrtps, rcpps) exactly, unlike a real CPU: so the approximate
kernels no stage uses do differ, which shows the comparison can fail; the real Intel reference
(tests/test_fingerprint.py) covers those instructions on real hardware.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import emulation
import fingerprint
from nnpipe.core import portable
from nnpipe.core.errors import PipelineError
from pipeline import ROOT, STAGES, Run, tiny_params, tree_bytes, with_changes

TRAINING = emulation.TRAINING
caller_env = emulation.caller_env


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    """name -> {"fingerprint", "md5s"}: natively and under each emulated CPU (tests/emulation.py,
    started by conftest as soon as the session's tests are collected)."""
    return emulation.results()


emulated = [pytest.mark.emulated,
            pytest.mark.skipif(emulation.QEMU is None, reason="no qemu-x86_64 here (Debian: "
                               "apt-get install qemu-user; .ci/run does it in CI)")]
CPUS = emulation.CPUS


@pytest.mark.slow
@pytest.mark.parametrize("cpu", [pytest.param(cpu, marks=emulated) for cpu in CPUS])
def test_the_training_stages_give_the_same_bytes_on_an_emulated_cpu(runs, cpu):
    native, other = runs["native"]["md5s"], runs[cpu]["md5s"]
    assert {f"models/{n.split('@')[1]}/weights.npz" for n in TRAINING if "@" in n} <= set(native)
    assert other.keys() == native.keys()
    assert sorted(k for k in native if native[k] != other[k]) == [], f"differ under {cpu}"


@pytest.mark.slow
@pytest.mark.parametrize("cpu", [pytest.param(cpu, marks=emulated) for cpu in CPUS])
def test_every_exact_kernel_agrees_on_an_emulated_cpu_and_only_approximate_ones_differ(runs,
                                                                                        cpu):
    native, other = runs["native"]["fingerprint"], runs[cpu]["fingerprint"]
    assert other["_kernels"] == native["_kernels"]  # the pins held on that CPU too
    assert portable.mismatches(other["_kernels"]) == []
    differ, approximate, compared = fingerprint.compare(native, other)
    assert compared == len([k for k in native if not k.startswith("_")])
    assert differ == [], f"exact kernels differ under {cpu}: {', '.join(differ)}"
    # QEMU computes rsqrtps exactly, this CPU does not: the check sees the difference
    assert any(k.split(".", 1)[1].startswith("sqrt(float32") for k in approximate), approximate


@pytest.mark.slow
@pytest.mark.parametrize("cpu", [pytest.param(CPUS[0], marks=emulated)])
def test_the_emulated_interpreter_is_this_one_with_its_packages(cpu):
    """From a virtualenv too: the emulated runs import this interpreter's numpy and torch."""
    import torch

    code = "import sys, torch; print(sys.prefix); print(torch.__file__)"
    result = subprocess.run([*emulation.interpreter(cpu), "-c", code], capture_output=True,
                            text=True, env=caller_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [sys.prefix, torch.__file__]


# --- the pins win over the caller's environment ------------------------------------------------

CONFLICTING = {"OPENBLAS_CORETYPE": "Sandybridge", "ATEN_CPU_CAPABILITY": "default",
               "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR",
               "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "2",
               "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
TINY = tiny_params()


def _trainers(root: Path, portable_math: bool, env: dict, data: Path | None = None) -> dict:
    """The tiny pipeline's data and training stages (only the training ones on a copy of
    ``data``, if given), each a real process started with ``env``, as ``python -m stages X``
    (the runner: warm or, with NNPIPE_WARM=0, cold); the bytes of what they wrote."""
    run = Run(root, with_changes(TINY, {"math.portable": portable_math}))
    if data is not None:
        shutil.copytree(data, run / "data")
    for name in TRAINING if data is None else [n for n in TRAINING if n.startswith("train@")]:
        stage = STAGES[name]
        result = subprocess.run(stage.command(), cwd=run.root, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    return {top: tree_bytes(run / top) for top in ("data", "models")}


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("pinned")
    return _trainers(root, True, caller_env()), root / "data"


@pytest.mark.slow
@pytest.mark.parametrize("warm", ["1", "0"], ids=["warm", "cold"])
def test_each_way_of_starting_a_stage_pins_the_same_kernels(pinned, tmp_path, warm):
    """Under a caller environment that asks for other kernels and threads, every way a stage
    starts computes with the pinned ones: the same bytes as with the caller's own (cold: the
    data stages too; warm: the training stages, on the same data)."""
    env = caller_env(CONFLICTING, NNPIPE_WARM=warm)
    data = None if warm == "0" else pinned[1]
    assert _trainers(tmp_path, True, env, data) == pinned[0]


@pytest.mark.slow
def test_the_conflicting_environment_does_change_native_results(pinned, tmp_path):
    """math.portable: false honours the caller's environment: the same variables then change
    the torch models' bytes, so the check above can fail."""
    native = _trainers(tmp_path / "native", False, caller_env(CONFLICTING), data=pinned[1])
    assert native["models"] != pinned[0]["models"]


def test_pinned_kernels_are_in_effect_under_a_conflicting_environment():
    result = subprocess.run([sys.executable, "-m", "nnpipe.core.portable", "--pin"],
                            capture_output=True, text=True, env=caller_env(CONFLICTING))
    assert result.returncode == 0, result.stderr
    found = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert portable.mismatches(found) == []
    assert found["torch_threads"] == "1"
    if portable.is_x86_64():
        assert found["numpy_simd"] == "X86_V3" and found["openblas_core"] == "Haswell"
        assert found["torch_capability"] == "AVX2"


@pytest.mark.slow
def test_torch_uses_no_onednn_primitive_in_the_trainers(tmp_path):
    """oneDNN picks its kernels by CPU and cache size: portable math relies on torch not
    using it for these models (checked with oneDNN's own verbose log, which does list the
    primitives of, say, a convolution)."""
    run = Run(tmp_path, TINY)
    code = ("import sys; sys.path[:0] = [{root!r}, {tests!r}]\nimport pipeline\n"
            "for name in {names!r}:\n    pipeline.STAGES[name].main()\n").format(
        root=str(ROOT), tests=str(ROOT / "tests"), names=TRAINING)
    result = subprocess.run([sys.executable, "-c", code], cwd=run.root, capture_output=True,
                            text=True, env=caller_env({"ONEDNN_VERBOSE": "all"}))
    assert result.returncode == 0, result.stderr
    log = (result.stdout + result.stderr).splitlines()
    assert [line for line in log if ",exec," in line] == []


# --- the pieces -----------------------------------------------------------------------------

def test_apply_sets_every_pinned_variable_and_drops_conflicting_ones():
    env = {"OMP_NUM_THREADS": "8", "OPENBLAS_CORETYPE": "SkylakeX", "MKL_CBWR": "AVX512",
           "NPY_DISABLE_CPU_FEATURES": "X86_V4", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
           "MKL_DEBUG_CPU_TYPE": "5", "HOME": "/home/u"}
    portable.apply(env, "x86_64")
    assert env == {**portable.pinned_env("x86_64"), "HOME": "/home/u"}
    assert env["NPY_ENABLE_CPU_FEATURES"] == "X86_V3" and env["OMP_NUM_THREADS"] == "1"


def test_other_architectures_pin_threads_only():
    env: dict[str, str] = {}
    portable.apply(env, "aarch64")
    assert env == portable.THREADS_ENV
    assert portable.expected("aarch64") == {"openblas_threads": "1"}


def test_missing_cpu_flags_names_what_an_old_cpu_lacks():
    flags = "flags\t\t: fpu sse sse2 avx avx2 fma bmi1 bmi2 abm movbe f16c avx512f\n"
    assert portable.missing_cpu_flags(flags) == []
    assert portable.missing_cpu_flags("flags : fpu sse sse2 avx\n") == \
        ["avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "f16c"]


def test_mismatches_name_each_kernel_that_is_not_pinned():
    found = {"numpy_simd": "X86_V3,X86_V4", "openblas_core": "SkylakeX",
             "openblas_threads": "1", "torch_capability": "AVX512"}
    assert portable.mismatches(found, "x86_64") == [
        "numpy_simd is X86_V3,X86_V4, want X86_V3", "openblas_core is SkylakeX, want Haswell",
        "torch_capability is AVX512, want AVX2"]


def test_native_mode_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    portable.pin(False)
    assert os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"


def test_pinning_after_numpy_loaded_unpinned_is_one_clear_error():
    code = "import numpy; from nnpipe.core import portable; portable.pin(True)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=caller_env(CONFLICTING))
    assert result.returncode != 0
    assert "math.portable=true, but numpy/torch were loaded before the kernels were pinned " \
           "(numpy_simd is baseline, want X86_V3; openblas_core is Sandybridge, want Haswell" \
        in result.stderr


def test_in_process_pin_checks_the_loaded_kernels():
    portable.pin(True)  # conftest pinned this session before numpy loaded: nothing to report
    assert portable.mismatches(portable.in_effect()) == []


def test_a_cpu_without_avx2_is_told_to_turn_portable_math_off(monkeypatch):
    monkeypatch.setattr(portable, "missing_cpu_flags", lambda text: ["avx2", "fma"])
    monkeypatch.setattr(portable, "is_x86_64", lambda machine=None: True)
    monkeypatch.setattr(os.path, "exists", lambda path: True)
    with pytest.raises(PipelineError, match=r"math.portable=true needs an x86-64 CPU with "
                       r"AVX2; this one lacks avx2, fma: set math.portable to false"):
        portable.pin(True)
