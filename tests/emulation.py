"""The data and training stages and the kernel fingerprint, natively and on emulated CPUs.

QEMU user-mode emulation (`qemu-x86_64 -cpu NAME`) runs this machine's Python on another CPU
model: numpy, OpenBLAS, MKL and torch see that CPU's vendor and features. An emulated run takes
minutes, so they start early and overlap the rest of the suite: conftest starts them when the
session has collected a test that needs them (marked ``emulated``), or under pytest-xdist the
first call of results() in the worker that runs those tests; results() waits for them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from env_util import CALLER_ENV
from nnpipe.core import portable
from pipeline import PARAMS, ROOT, STAGES, Run, with_changes

QEMU = shutil.which("qemu-x86_64")
CPUS = ("EPYC-Rome", "Haswell-v4")  # an AMD and an Intel CPU with AVX2 and no AVX-512
# The data and training stages, in dvc.yaml's order.
TRAINING = [n for n in STAGES if n in ("spiral", "fetch", "split", "scale_encode", "random_data")
            or n.startswith("train@")]
# Emulated AVX2 is about 100x slower than a real CPU (the NumPy MLP's 1000 epochs alone: ~8
# minutes per emulated CPU), so under emulation every model trains at most 100 epochs; every
# other size is the default one. Each epoch calls the same kernels, which the fingerprint covers.
CHANGES = {f"{name}.epochs": 100 for name in PARAMS if name.startswith("train_")
           and PARAMS[name]["epochs"] > 100}
PINNED_NAMES = set(portable.pinned_env("x86_64")) | set(portable.CONFLICTING_ENV)
# The fingerprint, then every TRAINING stage, in ONE process (its imports paid once): writes
# fingerprint.json and md5s.json (every output file under data/ and models/) into its cwd.
RUNNER = f"""
import hashlib, json, sys
from pathlib import Path
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
from fingerprint import kernels
from nnpipe.core import portable
portable.pin(True)
Path("fingerprint.json").write_text(json.dumps(kernels.compute(), sort_keys=True))
import pipeline
for name in {TRAINING!r}:
    pipeline.STAGES[name].main()
md5s = {{str(f): hashlib.md5(f.read_bytes()).hexdigest()
        for top in ("data", "models", "reports") for f in sorted(Path(top).rglob("*"))
        if f.is_file()}}
Path("md5s.json").write_text(json.dumps(md5s, sort_keys=True))
"""
_jobs: dict[str, subprocess.Popen] = {}
_root: list[Path] = []


def caller_env(emulation: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The session's environment as its caller gave it, with ``emulation`` on top."""
    emulation = emulation or {}
    env = {k: v for k, v in CALLER_ENV.items() if k not in PINNED_NAMES or k in emulation}
    env.update(emulation, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", **extra)
    if "NNPIPE_WARM_DIR" in os.environ:  # the session's own servers (conftest)
        env["NNPIPE_WARM_DIR"] = os.environ["NNPIPE_WARM_DIR"]
    env.pop("NNPIPE_DEBUG", None)
    return env


def interpreter(cpu: str | None) -> list[str]:
    """This interpreter, natively or under ``qemu-x86_64 -cpu CPU``, by the path it was started
    as: a virtualenv's bin/python finds the venv (pyvenv.cfg) beside it, where the binary it
    links to is the base interpreter, without the venv's packages."""
    return [sys.executable] if cpu is None else [QEMU, "-cpu", cpu, sys.executable]


def _start(root: Path, cpu: str | None) -> subprocess.Popen:
    Run(root, with_changes(PARAMS, CHANGES))
    return subprocess.Popen([*interpreter(cpu), "-c", RUNNER], cwd=root, env=caller_env(),
                            stdout=subprocess.DEVNULL,
                            stderr=open(root / "stderr.log", "w"))


def start() -> None:
    """Start the native run and one per emulated CPU (once per session)."""
    if _jobs or QEMU is None:
        return
    _root.append(Path(tempfile.mkdtemp(prefix="nnpipe-emulated-")))
    _jobs["native"] = _start(_root[0] / "native", None)
    for cpu in CPUS:
        _jobs[cpu] = _start(_root[0] / cpu, cpu)


def results() -> dict[str, dict]:
    """name -> {"fingerprint", "md5s"} of every run, waited for (started here if need be)."""
    start()
    found = {}
    for name, proc in _jobs.items():
        code = proc.wait(timeout=3600)
        log = (_root[0] / name / "stderr.log").read_text()
        assert code == 0, f"{name}: exit {code}\n{log[-3000:]}"
        found[name] = {kind: json.loads((_root[0] / name / f"{kind}.json").read_text())
                       for kind in ("fingerprint", "md5s")}
    return found


def stop() -> None:
    """End any run still going and remove the runs' directory."""
    for proc in _jobs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if _root:
        shutil.rmtree(_root[0], ignore_errors=True)
