"""What the reliability tests share: the registry's models picked by what they are, dvc.yaml's
paths, the good tiny run every case starts from, and the one-line error check.

Stages, models and paths come from tests/pipeline.py (dvc.yaml's registry): a case picks its
model by what its params section says (backend, activation, hidden_dims), not by name.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import penguins
from pipeline import MODEL_PREFIX, MODELS, PARAMS, ROOT, STAGES, Run, tiny_params, with_changes

PROC_TIMEOUT = 300


def model_where(test: Callable[[dict], bool]) -> str:
    """The first model of the registry whose params section passes ``test``."""
    return next(m for m in MODELS if test(PARAMS[MODEL_PREFIX + m]))


NUMPY = model_where(lambda s: s["backend"] == "numpy")
TORCH = model_where(lambda s: s["backend"] == "torch" and s["activation"] == "relu"
                    and s["hidden_dims"] != "auto")
LINEAR = model_where(lambda s: s["activation"] == "identity")
AUTO = model_where(lambda s: s["hidden_dims"] == "auto")


def train(model: str) -> str:
    return f"train@{model}"


def flag(stage: str, name: str, index: int = 0) -> str:
    """The value dvc.yaml's cmd gives ``--name`` (its ``index``-th, for ``--out A B C``)."""
    argv = STAGES[stage].argv
    return argv[argv.index(f"--{name}") + 1 + index]


def train_input(model: str, name: str) -> str:
    """A file train@<model> reads: ``train``, ``val`` (.npz) or ``state`` (preprocess.json)."""
    return flag(train(model), name)


def model_file(model: str, name: str) -> str:
    return f"{flag(train(model), 'model-dir')}/{name}"


MODELS_DIR = str(Path(flag(train(NUMPY), "model-dir")).parent)
# TORCH trained on the penguin table under a policy that refuses gaps and unseen categories
OWN_MODELS_DIR = "own-models"
OWN_POLICY = {"data.missing": "drop", "data.handle_unknown": "error"}
GOOD_INPUT_CSV = "X1,X2\n0.1,0.1\n-0.5,0.3\n0.9,-0.9\n"
PREDICTIONS = "predictions.csv"


# --- processes --------------------------------------------------------------------------------

def child_env(pythonpath: bool = True, **extra: str) -> dict[str, str]:
    """This environment without NNPIPE_DEBUG; the repo importable from any directory."""
    env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
    env.update(PYTHONDONTWRITEBYTECODE="1", no_proxy="*", NO_PROXY="*", **extra)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_all(jobs: list[tuple[list[str], Path]], stdin: list | None = None,
            **env: str) -> list[Result]:
    """Run ``(argv, cwd)`` jobs concurrently (``stdin``: a file or None for each) and wait."""
    procs = [subprocess.Popen(argv, cwd=cwd, env=child_env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              stdin=(stdin or [None] * len(jobs))[i])
             for i, (argv, cwd) in enumerate(jobs)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=PROC_TIMEOUT)
        results.append(Result(proc.returncode, out, err))
    return results


def stage_args(stage: str, params: Path) -> list[str]:
    """dvc.yaml's arguments of ``stage``, reading ``params``."""
    return STAGES[stage].with_args(params=str(params))


def stage_command(stage: str, params: Path) -> list[str]:
    """``python -m stages <stage>`` with dvc.yaml's arguments, reading ``params``."""
    return STAGES[stage].command(stage_args(stage, params))


def predict_args(*args: str) -> list[str]:
    return ["--model", NUMPY, "--models-dir", MODELS_DIR, *args]


def predict_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnpipe.predict", *predict_args(*args)]


def in_process(stage: str, argv: list[str], cwd: Path, stdin=None) -> Result:
    """``stage``'s in-process entry (the runner's ``run``, or predict's ``main``) on ``argv``
    in ``cwd``: its exit code (SystemExit), stdout and stderr."""
    from nnpipe import predict

    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        if stdin is not None:
            saved, sys.stdin = sys.stdin, stdin
            stack.callback(setattr, sys, "stdin", saved)
        try:
            predict.main(argv) if stage == "predict" else STAGES[stage].main(argv)
        except SystemExit as exc:
            code = exc.code
    return Result(code, out.getvalue(), err.getvalue())


def prefix(stage: str) -> str:
    return "predict" if stage == "predict" else STAGES[stage].prefix


# --- files ------------------------------------------------------------------------------------

def copy_path(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def build_good(root: Path) -> Path:
    """The whole pipeline on tiny params (in this process: it is only the cases' input), a
    good ``nnpipe.predict --input --output`` result, and OWN_MODELS_DIR."""
    Run(root, tiny_params()).run()
    (root / "new.csv").write_text(GOOD_INPUT_CSV)
    result = in_process("predict", predict_args("--input", "new.csv", "--output", PREDICTIONS),
                        root)
    assert result.returncode == 0, result.stderr
    own = Run(root.parent / "own", with_changes(tiny_params(), {
        "fetch.source": str(penguins.write(root.parent / "penguins.csv")),
        "data.features": penguins.FEATURES, "data.target": penguins.TARGET, **OWN_POLICY}))
    own.run(["fetch", "split", "scale_encode", train(TORCH)])
    copy_path(own.model_dir(TORCH), root / OWN_MODELS_DIR / TORCH)
    return root


def inputs(stage: str) -> list[str]:
    return [MODELS_DIR, OWN_MODELS_DIR] if stage == "predict" else list(STAGES[stage].deps)


def declared_outputs(stage: str) -> list[str]:
    return [PREDICTIONS] if stage == "predict" else list(STAGES[stage].outs)


def prepare(stage: str, root: Path, good: Path, with_outputs: bool) -> None:
    """``root`` holds the stage's data inputs from the good run, and its outputs if asked."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in [*inputs(stage), *(declared_outputs(stage) if with_outputs else ())]:
        copy_path(good / rel, root / rel)


def assert_one_line_error(result: Result, prefix: str, fragments=(), usage: bool = False) -> str:
    """Exit 2, nothing on stdout, exactly ``<prefix>: error: ...`` on stderr, no traceback (a
    ``usage`` error: argparse's usage line before it). A fragment that is a tuple: any of it."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == "", result.stdout[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 or usage and lines[0].startswith("usage: "), result.stderr[:2000]
    line = lines[-1]
    assert line.startswith(f"{prefix}: error: "), line[:2000]
    assert len(line) <= 600, f"an error line of {len(line)} characters"
    for fragment in fragments:
        assert any(f in line for f in ((fragment,) if isinstance(fragment, str) else fragment)), \
            (fragment, line)
    return line
