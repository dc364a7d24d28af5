"""Portable math (issue 11): pinned kernels give the same bytes under every emulated CPU.

A real second CPU model is not at hand in a test, so CPUs are emulated with the variables that
steer each library's choice of code path: MKL capped at AVX2 and NumPy without its AVX-512
loops (an AVX2-only CPU), OpenBLAS's Haswell kernels, one or two threads, a smaller L2 cache,
and a pre-AVX2 CPU. In portable mode every emulation must give the same md5 for every output
of the data and training stages; in native mode the same emulations must change them, which
shows that the check can fail.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from deps import ROOT, resolve_stages
from env_util import CALLER_ENV
from nnpipe.core import portable
from nnpipe.core.errors import PipelineError

STAGES = ("fetch", "split", "scale_encode", "train@linear", "train@numpy_mlp",
          "train@torch_mlp", "overfit_random")
TRAINERS = STAGES[3:]
PINNED_NAMES = set(portable.pinned_env("x86_64")) | set(portable.CONFLICTING_ENV)
THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
EMULATIONS = {
    "native": {},
    "avx2-only": {"MKL_ENABLE_INSTRUCTIONS": "AVX2",
                  "NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR"},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "1-thread": dict.fromkeys(THREADS, "1"),
    "2-threads": dict.fromkeys(THREADS, "2"),
    "small-l2": {"OPENBLAS_L2_SIZE": "262144"},
    "pre-avx2": {"OPENBLAS_CORETYPE": "Sandybridge", "ATEN_CPU_CAPABILITY": "default",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR"},
}
# Runs the stages one after another in ONE new process, as bench/floor.py does: the first
# stage pins the kernels before numpy and torch load.
RUNNER = """
import importlib, sys
for module, argv in COMMANDS:
    importlib.import_module(module).main(argv)
"""


def commands(stages: tuple[str, ...] = STAGES) -> list[tuple[str, list[str]]]:
    """(module, argv) of each stage, from dvc.yaml's own cmd (as DVC resolves it)."""
    dvc = resolve_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    found = []
    for name in stages:
        words = shlex.split(dvc[name]["cmd"])
        assert words[:4] == ["python", "-m", "stages", name.split("@")[0]]
        found.append((f"stages.{words[3]}", words[4:]))
    return found


def caller_env(emulation: dict[str, str], **extra: str) -> dict[str, str]:
    """The session's environment as its caller gave it, with ``emulation`` on top."""
    env = {k: v for k, v in CALLER_ENV.items() if k not in PINNED_NAMES or k in emulation}
    env.update(emulation, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1",
               NNPIPE_WARM_DIR=os.environ["NNPIPE_WARM_DIR"], **extra)
    env.pop("NNPIPE_DEBUG", None)
    return env


def workdir(tmp_path: Path, name: str, portable_math: bool, inputs: Path | None = None) -> Path:
    """A directory with params.yaml (and the data stages' outputs copied from ``inputs``)."""
    path = tmp_path / name
    if inputs is None:
        path.mkdir()
    else:
        shutil.copytree(inputs / "data", path / "data", ignore=shutil.ignore_patterns("over*"))
        shutil.copytree(inputs / "models", path / "models",
                        ignore=lambda _, names: [n for n in names if n != "preprocess.json"])
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["math"]["portable"] = portable_math
    (path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def md5s(path: Path) -> dict[str, str]:
    """md5 of every output file under ``path`` (params.yaml excluded)."""
    return {str(f.relative_to(path)): hashlib.md5(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file() and f.name != "params.yaml"}


def run_in_one_process(path: Path, emulation: dict[str, str]) -> dict[str, str]:
    code = f"COMMANDS = {commands()!r}\n{RUNNER}"
    result = subprocess.run([sys.executable, "-c", code], cwd=path, capture_output=True,
                            text=True, env=caller_env(emulation))
    assert result.returncode == 0, result.stderr
    return md5s(path)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emulated")


@pytest.fixture(scope="module")
def outputs(emulated) -> dict[tuple[str, str], dict[str, str]]:
    """md5s of every stage output per (mode, emulation)."""
    runs = {(mode, name): workdir(emulated, f"{mode}-{name}", mode == "portable")
            for mode in ("portable", "native") for name in EMULATIONS}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = {key: pool.submit(run_in_one_process, path, EMULATIONS[key[1]])
                for key, path in runs.items()}
    return {key: future.result() for key, future in done.items()}


def test_portable_outputs_are_identical_under_every_emulated_cpu(outputs):
    reference = outputs["portable", "native"]
    assert any(name.startswith("models/numpy_mlp/") for name in reference)
    assert len(reference) >= 20  # every data and training output is compared
    for name in EMULATIONS:
        changed = sorted(k for k, v in outputs["portable", name].items() if reference[k] != v)
        assert outputs["portable", name].keys() == reference.keys()
        assert changed == [], f"portable math changed under {name}: {changed}"


def test_native_outputs_change_under_the_emulations_so_the_check_can_fail(outputs):
    reference = outputs["native", "native"]
    changed = {name: sorted(k for k, v in outputs["native", name].items() if reference[k] != v)
               for name in EMULATIONS}
    # A pre-AVX2 CPU runs other kernels than any AVX2 CPU (this one included): NumPy's
    # baseline loops, OpenBLAS without FMA, ATen's default kernels.
    assert any(k.startswith("models/numpy_mlp/") for k in changed["pre-avx2"]), changed
    assert any(k.startswith("models/torch_mlp/") for k in changed["pre-avx2"]), changed
    assert reference != outputs["portable", "native"]


@pytest.mark.parametrize("launch", ["warm", "cold", "module"])
def test_each_way_of_starting_a_stage_pins_the_same_kernels(outputs, emulated, tmp_path,
                                                             launch):
    """The trainers as ``python -m stages X`` through the warm server or with NNPIPE_WARM=0,
    and as ``python -m stages.X``, under a conflicting environment: the same bytes."""
    path = workdir(tmp_path, launch, True, inputs=emulated / "portable-native")
    emulation = {**EMULATIONS["pre-avx2"], **EMULATIONS["2-threads"]}
    env = caller_env(emulation, **({"NNPIPE_WARM": "0"} if launch == "cold" else {}))
    for module, argv in commands(TRAINERS):
        head = [sys.executable, "-m", module] if launch == "module" else \
            [sys.executable, "-m", "stages", module.split(".")[1]]
        for _ in range(2 if launch == "warm" else 1):  # the second run is served warm
            result = subprocess.run(head + argv, cwd=path, capture_output=True, text=True,
                                    env=env)
            assert result.returncode == 0, result.stderr
    assert md5s(path) == outputs["portable", "native"]


@pytest.mark.parametrize("name", sorted(EMULATIONS))
def test_pinned_kernels_are_in_effect_under_each_emulation(name):
    result = subprocess.run([sys.executable, "-m", "nnpipe.core.portable", "--pin"],
                            capture_output=True, text=True, env=caller_env(EMULATIONS[name]))
    assert result.returncode == 0, result.stderr
    found = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert portable.mismatches(found) == []
    assert found["torch_threads"] == "1"
    if portable.is_x86_64():
        assert found["numpy_simd"] == "X86_V3" and found["openblas_core"] == "Haswell"


def test_torch_uses_no_onednn_primitive_in_the_trainers(outputs, emulated, tmp_path):
    """oneDNN picks its kernels by CPU and cache size: portable math relies on torch not
    using it for these models (checked with oneDNN's own verbose log, which does list the
    primitives of, say, a convolution)."""
    path = workdir(tmp_path, "onednn", True, inputs=emulated / "portable-native")
    code = f"COMMANDS = {commands(TRAINERS)!r}\n{RUNNER}"
    result = subprocess.run([sys.executable, "-c", code], cwd=path, capture_output=True,
                            text=True, env=caller_env({"ONEDNN_VERBOSE": "all"}))
    assert result.returncode == 0, result.stderr
    log = (result.stdout + result.stderr).splitlines()
    assert [line for line in log if ",exec," in line] == []


@pytest.mark.parametrize("stage", sorted({s.split("@")[0] for s in STAGES}
                                         | {"evaluate", "plot_data", "plot_model"}))
def test_importing_a_stage_loads_no_math_library(stage):
    """The pin runs in main(), after the params are read: the module itself must not load
    numpy or torch, or ``python -m stages.<stage>`` would compute unpinned."""
    code = (f"import sys, stages.{stage}; "
            "print([m for m in ('numpy', 'torch', 'pandas', 'sklearn') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=caller_env({}))
    assert result.stdout.strip() == "[]", result.stderr


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
        "torch_capability is AVX512, want DEFAULT"]


def test_native_mode_leaves_the_environment_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    portable.pin(False)
    assert os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"


def test_pinning_after_numpy_loaded_unpinned_is_one_clear_error():
    code = "import numpy; from nnpipe import portable; portable.pin(True)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=caller_env(EMULATIONS["pre-avx2"]))
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
