"""Reliability: the failure contract seen from outside, through real processes.

1. Bad input (files, URLs, params) given to the real stage commands (`python -m stages <stage>`
   with exactly the arguments of dvc.yaml's `cmd`) and to `python -m nnpipe.predict`: exit 2,
   one stderr line naming the culprit, no traceback, nothing written or overwritten.
2. Atomic outputs: `dvc repro` SIGKILLed mid-training leaves no temp or partial files, and the
   next `dvc repro` ends byte-identical to an uninterrupted run.
3. Artifacts cannot run code: a pickle payload planted in every slot the pipeline loads is
   refused with one line, and its side effect never happens.
4. Determinism: two fresh copies running the default pipeline agree byte for byte, and with the
   committed dvc.lock and metrics.
5. Numerical guards: a diverging run stops naming the stage and the epoch, writing nothing.

Stage commands are read from dvc.yaml and their paths resolved under a temporary root,
so a case runs a stage exactly as DVC would, on the outputs of one tiny good run.
"""
from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

import local_http
from local_http import good_csv_text
from deps import ROOT, resolve_stages
from e2e_util import copy_repo, run, stages_run, with_changes
from warm_util import forks

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = resolve_stages(DVC)  # as DVC runs them: vars, foreach and ${...} filled in
PATHS = {"models": "models", "processed": "data/processed", "overfit_data": "data/overfit_random",
         "preprocess": "models/preprocess.json", "curves": "reports/curves"}
BASE_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# A trainer is named here by its params section (train_<model>), as its errors name it.
TRAINED = DVC["stages"]["train"]["foreach"]
TRAINERS = (*(f"train_{m}" for m in TRAINED), "overfit_random")
GARBAGE_BYTES = 5 * 2**20
PROC_TIMEOUT = 300


# --- params -----------------------------------------------------------------------------------

def tiny_params(changes: dict | None = None) -> dict:
    """params.yaml shrunk so every stage runs in about a second, with ``{"a.b": v}`` changes."""
    p = copy.deepcopy(BASE_PARAMS)
    p["fetch"]["samples_per_class"] = 30
    p["train_linear"].update(epochs=3, hidden_dims=[8])
    p["train_numpy_mlp"].update(epochs=20, hidden_dims=[8], log_every=10)
    p["train_torch_mlp"].update(epochs=5, hidden_dims=[8], log_every=5)
    p["overfit_random"].update(samples_per_class=10, epochs=5, log_every=5)
    p["plot"].update(grid_size=11, max_points=50)
    return with_changes(p, changes or {})


def write_params(path: Path, p: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


# --- stage commands straight from dvc.yaml -----------------------------------------------------

def dvc_stage(stage: str) -> str:
    """The dvc.yaml stage name: train_<model> is train@<model>; others are as written."""
    model = stage[len("train_"):]
    return f"train@{model}" if stage.startswith("train_") and model in TRAINED else stage


def _stage_body(stage: str) -> dict:
    return STAGES[dvc_stage(stage)]


def _resolve(text: str, root: Path, declared: set[str] = frozenset()) -> str:
    """A resolved dvc.yaml cmd or path with every path (a token with "/", a declared dep/out,
    or a directory of them such as evaluate's ``--models-dir models``) under ``root``."""
    def is_path(token: str) -> bool:
        return "/" in token or any(d == token or d.startswith(token + "/") for d in declared)

    return " ".join(str(root / token) if is_path(token) else token for token in text.split())


def _entries(items) -> list[str]:
    return [item if isinstance(item, str) else next(iter(item)) for item in items or []]


def stage_argv(stage: str, root: Path, params: Path) -> list[str]:
    """dvc.yaml's cmd for ``stage`` with every path under ``root`` and ``--params params``."""
    body = _stage_body(stage)
    declared = {p for kind in ("deps", "outs") for p in _entries(body.get(kind))
                if not p.endswith(".py")}  # data, not code: `-m stages` is no path
    args = shlex.split(_resolve(body["cmd"], root, declared))
    assert args[:2] == ["python", "-m"], args
    args[0] = sys.executable
    if "--params" in args:
        args[args.index("--params") + 1] = str(params)
    return args


def stage_outs(stage: str, root: Path) -> list[Path]:
    """Every path the stage declares it writes (outs, metrics, plots)."""
    body = _stage_body(stage)
    return [root / p for kind in ("outs", "metrics", "plots") for p in _entries(body.get(kind))]


def stage_data_deps(stage: str, root: Path) -> list[Path]:
    """The stage's data inputs (the deps that are not code)."""
    body = _stage_body(stage)
    return [root / p for p in body["deps"] if not p.endswith(".py")]


def predict_argv(root: Path, *args: str, model: str = "numpy_mlp") -> list[str]:
    return [sys.executable, "-m", "nnpipe.predict", "--model", model,
            "--models-dir", str(root / PATHS["models"]), *args]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
    env.update(PYTHONDONTWRITEBYTECODE="1", no_proxy="*", NO_PROXY="*", **extra)
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def launch(argv: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=child_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> Result:
    out, err = proc.communicate(timeout=PROC_TIMEOUT)
    return Result(proc.returncode, out, err)


def run_all(argvs: list[list[str]], **env: str) -> list[Result]:
    """Run commands concurrently (cwd = the repo root) and wait for all of them."""
    return [finish(proc) for proc in [launch(argv, **env) for argv in argvs]]


def run_ok(*argvs: list[str]) -> None:
    for argv, result in zip(argvs, run_all(list(argvs))):
        assert result.returncode == 0, f"{argv}\n{result.stderr}"


# --- files ------------------------------------------------------------------------------------

def copy_path(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file()}


def tree_hashes(repo: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/, reports/ (dvc_plots excluded)."""
    found = {}
    for top in ("data", "models", "reports"):
        for f in sorted((repo / top).rglob("*")):
            if f.is_file() and "dvc_plots" not in f.parts:
                found[str(f.relative_to(repo))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


def temp_files(repo: Path) -> list[Path]:
    return [f for top in ("data", "models", "reports") for f in (repo / top).rglob(".*.tmp")]


# --- the good run every case starts from ------------------------------------------------------

GOOD_INPUT_CSV = "X1,X2\n0.1,0.1\n-0.5,0.3\n0.9,-0.9\n"


@dataclass(frozen=True)
class Good:
    root: Path
    params: Path
    predictions: Path  # a good `nnpipe.predict --input --output` result


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Good:
    """fetch .. evaluate (and plot_data, predict) on tiny params, each as a subprocess."""
    root = tmp_path_factory.mktemp("good")
    params = write_params(root / "params.yaml", tiny_params())
    (root / "new.csv").write_text(GOOD_INPUT_CSV)
    predictions = root / "predictions.csv"
    for batch in (["fetch"], ["split", "plot_data"], ["scale_encode"], TRAINERS):
        run_ok(*(stage_argv(stage, root, params) for stage in batch))
    run_ok(stage_argv("evaluate", root, params),
           predict_argv(root, "--input", str(root / "new.csv"), "--output", str(predictions)))
    return Good(root, params, predictions)


def prepare(stage: str, root: Path, good: Good, with_outputs: bool) -> None:
    """``root`` holds the stage's data inputs from the good run, and its outputs if asked."""
    if stage == "predict":
        copy_path(good.root / PATHS["models"] / "numpy_mlp", root / PATHS["models"] / "numpy_mlp")
        if with_outputs:
            copy_path(good.predictions, root / "predictions.csv")
        return
    for dep in stage_data_deps(stage, good.root):
        copy_path(dep, root / dep.relative_to(good.root))
    if with_outputs:
        for out in stage_outs(stage, good.root):
            copy_path(out, root / out.relative_to(good.root))


def assert_one_line_error(result: Result, prefix: str, fragments=()) -> str:
    """Exit 2, nothing on stdout, exactly ``<prefix>: error: ...`` on stderr, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert lines[0].startswith(f"{prefix}: error: "), lines[0][:2000]
    assert len(lines[0]) <= 600, f"an error line of {len(lines[0])} characters"
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def stage_prefix(stage: str) -> str:
    return stage.replace("@", " ")


# --- a local HTTP server -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:<port> serving good.csv; 404 for anything else, 500 under /error500."""
    yield from local_http.serve_good_csv(tmp_path_factory)


# --- 1. the bad-input table --------------------------------------------------------------------

def garbage() -> bytes:
    return np.random.RandomState(0).bytes(GARBAGE_BYTES)


def zip_of_non_arrays() -> bytes:
    """A valid zip archive with members X and y that are not .npy arrays (e.g. a renamed .jar)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X", b"not an array")
        archive.writestr("y", b"nor this")
    return buffer.getvalue()


IS_DIR = "<a directory>"
FIFO = "<a fifo>"         # fetch.source / --input: a named pipe no one writes to
DEV_ZERO = "/dev/zero"   # fetch.source / --input: endless bytes
HUGE_LABEL = 50 * 2**20  # characters of one class name


def huge_label_csv() -> bytes:
    return (good_csv_text() + "1,1," + "x" * HUGE_LABEL + "\n").encode()


def params_text_with(extra: str = "", **replace: str) -> Callable[[], bytes]:
    """A params.yaml that is tiny_params() with ``extra`` lines appended and top-level
    ``replace``d values written verbatim (YAML that yaml.safe_dump would not write)."""
    def make() -> bytes:
        p = tiny_params()
        for key in replace:
            p[key] = f"@{key}@"
        text = yaml.safe_dump(p, sort_keys=False)
        for key, raw in replace.items():
            text = text.replace(f"'@{key}@'", raw)
        return (text + extra).encode()
    return make


ROWS = good_csv_text().split("\n", 1)[1]  # without the header


@dataclass(frozen=True)
class Case:
    """One bad input. ``source``: fetch.source / predict --input content, or a URL template
    ("{url}", "{closed}"). ``plant``: repo-relative input files replaced by bad content (or
    by a directory: IS_DIR). ``changes``: params. ``args``: predict's NAME=VALUE arguments.
    Fragments may use {src}, {root} and {params}."""
    stage: str
    fragments: tuple[str, ...]
    source: str | bytes | Callable[[], bytes] | None = None
    plant: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    params_file: Callable[[], bytes] | None = None  # replaces the whole params.yaml


def _fetch(source, *fragments, **changes) -> Case:
    return Case("fetch", ("{src}", *fragments), source=source,
                changes={k.replace("__", "."): v for k, v in changes.items()})


def _predict(source, *fragments) -> Case:
    return Case("predict", ("{src}", *fragments), source=source)


def _param(stage: str, changes: dict, *fragments) -> Case:
    return Case(stage, ("{params}", *fragments), changes=changes)


HEADER = "X1,X2,color\n"
CASES: dict[str, Case] = {
    # fetch: a user's CSV (path or URL)
    "fetch-empty_file": _fetch("", "empty file"),
    "fetch-header_only": _fetch(HEADER, "no data rows"),
    "fetch-no_header": _fetch("".join(f"{i}.5,{i}.25,c{i % 2}\n" for i in range(12)),
                              "column 'X1' not found", "header row"),
    "fetch-no_header_repeated_value": _fetch("0,0,c1\n" + ROWS, "header row"),
    "fetch-missing_feature": _fetch("X1,X3,color\n" + ROWS, "column 'X2' not found"),
    "fetch-missing_target": _fetch("X1,X2,label\n" + ROWS, "column 'color' not found"),
    "fetch-non_numeric": _fetch(good_csv_text() + "abc,0.5,c1\n", "column 'X1' row 26", "'abc'"),
    "fetch-nan": _fetch(good_csv_text() + "0.5,nan,c1\n", "column 'X2' row 26", "nan"),
    "fetch-inf": _fetch(good_csv_text() + "-inf,0.5,c2\n", "column 'X1' row 26", "-inf"),
    "fetch-single_class": _fetch(HEADER + "".join(f"{i},{i},c1\n" for i in range(12)),
                                 "column 'color' has 1 class"),
    "fetch-class_too_small": _fetch(good_csv_text() + "1,1,c9\n2,2,c9\n",
                                    "class 'c9' has 2 row(s)"),
    "fetch-duplicate_columns": _fetch("X1,X1,color\n" + ROWS, "duplicate column name 'X1'"),
    "fetch-features_name_target": _fetch(good_csv_text(), "data.target 'color'", "data.features",
                                         data__features=["X1", "color"]),
    "fetch-binary_garbage_5mb": _fetch(garbage, "not a"),
    "fetch-unreachable_url": _fetch("http://127.0.0.1:{closed}/x.csv", "cannot fetch",
                                    fetch__timeout=5),
    "fetch-http_404": _fetch("{url}/missing.csv", "HTTP 404"),
    "fetch-http_500": _fetch("{url}/error500/good.csv", "HTTP 500"),
    "fetch-dev_zero": _fetch(DEV_ZERO, "not a regular file"),
    "fetch-fifo": _fetch(FIFO, "not a regular file"),
    "fetch-too_large": _fetch(good_csv_text(), "bytes, more than the 104 allowed",
                              "fetch.max_mb", fetch__max_mb=0.0001),
    "fetch-huge_label": _fetch(huge_label_csv, "class 'xxxxx", "characters"),
    "fetch-sha256_mismatch": _fetch("{url}/good.csv", "sha256", "f" * 64, "fetch.sha256",
                                    hashlib.sha256(good_csv_text().encode()).hexdigest(),
                                    fetch__sha256="f" * 64),
    # the other stages' input files
    "split-class_too_small_for_split": Case(
        "split", ("{root}/data/raw.csv", "class 'c4' has 5 row(s)"),
        plant={"data/raw.csv": good_csv_text() + "".join(f"{i},{i},c4\n" for i in range(5))}),
    "split-binary_garbage_5mb": Case("split", ("{root}/data/raw.csv", "not a readable CSV"),
                                     plant={"data/raw.csv": garbage}),
    "scale_encode-split_missing_target": Case(
        "scale_encode", ("{root}/data/split/val.csv", "column 'color' not found"),
        plant={"data/split/val.csv": "X1,X2\n0.1,0.2\n"}),
    "train_numpy_mlp-garbage_npz_5mb": Case(
        "train_numpy_mlp", ("{root}/data/processed/train.npz", "not a valid .npz"),
        plant={"data/processed/train.npz": garbage}),
    "train_numpy_mlp-zip_without_arrays": Case(
        "train_numpy_mlp", ("{root}/data/processed/train.npz",),
        plant={"data/processed/train.npz": zip_of_non_arrays}),
    "train_numpy_mlp-preprocess_is_a_directory": Case(
        "train_numpy_mlp", ("{root}/models/preprocess.json",),
        plant={"models/preprocess.json": IS_DIR}),
    "split-raw_is_a_directory": Case("split", ("{root}/data/raw.csv",),
                                     plant={"data/raw.csv": IS_DIR}),
    # params, against the stage that reads the section (a tmp params.yaml via --params)
    "params-unknown_key": _param("train_numpy_mlp", {"train_numpy_mlp.lrr": 0.1},
                                 "unknown key train_numpy_mlp.lrr"),
    "params-wrong_type": _param("train_numpy_mlp", {"train_numpy_mlp.epochs": "ten"},
                                "train_numpy_mlp.epochs='ten'", "integer"),
    "params-wrong_type_fetch": _param("fetch", {"fetch.samples_per_class": "30"},
                                      "fetch.samples_per_class='30'"),
    "params-bad_seed": _param("split", {"seed": -1}, "seed=-1"),
    "params-negative_lr": _param("train_linear", {"train_linear.lr": -0.01},
                                 "train_linear.lr=-0.01", "> 0"),
    "params-nan_lr": _param("train_numpy_mlp", {"train_numpy_mlp.lr": float("nan")},
                            "train_numpy_mlp.lr=nan"),
    "params-epochs_0": _param("train_numpy_mlp", {"train_numpy_mlp.epochs": 0},
                              "train_numpy_mlp.epochs=0"),
    "params-hidden_dims_0": _param("train_numpy_mlp", {"train_numpy_mlp.hidden_dims": [0]},
                                   "train_numpy_mlp.hidden_dims=[0]"),
    "params-dropout_p_1": _param("train_torch_mlp", {"train_torch_mlp.dropout_p": 1.0},
                                 "train_torch_mlp.dropout_p=1.0"),
    "params-split_sum": _param("split", {"split.val_size": 0.25}, "split.train_size",
                               "sum to 1"),
    "params-split_sum_overfit": _param("overfit_random", {"split.test_size": 0.05},
                                       "split.train_size", "sum to 1"),
    "params-plot_grid_0": _param("plot_data", {"plot.grid_size": 0}, "plot.grid_size=0"),
    "params-binary_garbage_5mb": Case("fetch", ("{params}",), params_file=garbage),
    "params-hidden_dims_1e12": _param("train_numpy_mlp",
                                      {"train_numpy_mlp.hidden_dims": [10**12]},
                                      "train_numpy_mlp.hidden_dims=[1000000000000]",
                                      "at most 100000"),
    "params-hidden_dims_weights_1e10": _param("train_torch_mlp",
                                              {"train_torch_mlp.hidden_dims": [100000, 100000]},
                                              "train_torch_mlp.hidden_dims=[100000, 100000]"),
    "params-epochs_1e9": _param("train_torch_mlp", {"train_torch_mlp.epochs": 10**9},
                                "train_torch_mlp.epochs=1000000000", "at most"),
    "params-overfit_auto_too_wide": _param(
        "overfit_random", {"overfit_random.samples_per_class": 100_000},
        "overfit_random.hidden_dims=auto gives 600002 hidden units"),
    "params-alias_bomb": Case("fetch", ("{params}", "YAML aliases", "line"),
                              params_file=params_text_with(
                                  "a: &a [x, x, x, x, x, x, x, x, x]\n"
                                  + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                            for p, c in zip("abcdefgh", "bcdefghi")))),
    "params-nesting_5000": Case("fetch", ("{params}", "nested deeper than 20"),
                                params_file=params_text_with("deep: " + "[" * 5000
                                                             + "]" * 5000 + "\n")),
    "params-5000_digit_seed": Case("fetch", ("{params}", "an integer of 5000 digits"),
                                   params_file=params_text_with(seed="1" * 5000)),
    "params-huge_string": _param("train_torch_mlp", {"train_torch_mlp.init": "r" * 10**6},
                                 "train_torch_mlp.init='rrrr", "characters"),
    "params-utf16": Case("fetch", ("{params}",),
                         params_file=lambda: yaml.safe_dump(tiny_params()).encode("utf-16")),
    # predict: a CSV of new points, or NAME=VALUE
    "predict-empty_file": _predict("", "empty file"),
    "predict-header_only": _predict("X1,X2\n", "no data rows"),
    "predict-no_header": _predict("0.1,0.2\n0.3,0.4\n", "missing feature column"),
    "predict-missing_feature": _predict("X1,X3\n0.1,0.2\n", "missing feature column(s) X2"),
    "predict-non_numeric": _predict("X1,X2\n0.1,abc\n", "column 'X2' row 2", "'abc'"),
    "predict-nan": _predict("X1,X2\nnan,0.1\n", "column 'X1' row 2", "not a finite"),
    "predict-inf": _predict("X1,X2\n0.1,inf\n", "column 'X2' row 2", "not a finite"),
    "predict-duplicate_columns": _predict("X1,X1,X2\n1,2,3\n", "duplicate column name 'X1'"),
    "predict-binary_garbage_5mb": _predict(garbage, "not a"),
    "predict-missing_file": Case("predict", ("{root}/nothing.csv", "file not found"),
                                 args=("--input", "{root}/nothing.csv")),
    "predict-arg_nan": Case("predict", ("feature 'X1'", "'nan'"), args=("X1=nan", "X2=0")),
    "predict-arg_text": Case("predict", ("feature 'X2'", "'abc'"), args=("X1=0", "X2=abc")),
    "predict-arg_unknown_feature": Case("predict", ("unknown feature 'X3'",),
                                        args=("X1=0", "X3=1")),
    "predict-arg_missing_feature": Case("predict", ("missing feature(s) X2",), args=("X1=0",)),
    "predict-arg_repeated_feature": Case("predict", ("feature 'X1' given twice",),
                                         args=("X1=0", "X1=1", "X2=0")),
    "predict-output_without_input": Case("predict", ("--output needs --input",),
                                         args=("--output", "{root}/predictions.csv", "X1=0",
                                               "X2=0")),
    "predict-output_is_a_directory": Case("predict", ("--output {root}", "is a directory"),
                                          args=("--input", "{root}/models/numpy_mlp/config.json",
                                                "--output", "{root}")),
    "predict-dev_zero": _predict(DEV_ZERO, "not a regular file", "--input"),
    "predict-fifo": _predict(FIFO, "not a regular file"),
}


def _content(value) -> bytes:
    value = value() if callable(value) else value
    return value.encode() if isinstance(value, str) else value


def case_command(case: Case, root: Path, tmp_path: Path, url: str,
                 closed: int) -> tuple[list[str], dict]:
    """(argv, fragment substitutions) for one case run in ``root``."""
    source = ""
    if isinstance(case.source, str) and case.source.startswith(("{url}", "http://")):
        source = case.source.format(url=url, closed=closed)
    elif case.source == DEV_ZERO:
        source = DEV_ZERO
    elif case.source == FIFO:
        source = str(tmp_path / "pipe.csv")
        if not Path(source).exists():
            os.mkfifo(source)
    elif case.source is not None:
        source = str(tmp_path / ("input.csv" if case.stage == "predict" else "source.csv"))
        if not Path(source).exists():
            Path(source).write_bytes(_content(case.source))
    for rel, content in case.plant.items():
        if content == IS_DIR:
            (root / rel).unlink()
            (root / rel).mkdir()
        else:
            (root / rel).write_bytes(_content(content))
    changes = dict(case.changes)
    if case.stage == "fetch" and case.source is not None:
        changes["fetch.source"] = source
    params = write_params(tmp_path / "params.yaml", tiny_params(changes))
    if case.params_file:
        params.write_bytes(case.params_file())
    subs = {"src": source, "root": str(root), "params": str(params)}
    if case.stage != "predict":
        return stage_argv(case.stage, root, params), subs
    args = [a.format(**subs) for a in case.args]
    if source:
        args += ["--input", source, "--output", str(root / "predictions.csv")]
    return predict_argv(root, *args), subs


def declared_outputs(stage: str, root: Path) -> list[Path]:
    return [root / "predictions.csv"] if stage == "predict" else stage_outs(stage, root)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, good, server, tmp_path):
    """Run twice at once: into a fresh root, and over the outputs of a good run."""
    case = CASES[name]
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    prepare(case.stage, fresh, good, with_outputs=False)
    prepare(case.stage, kept, good, with_outputs=True)
    closed = local_http.closed_port()
    commands = [case_command(case, root, tmp_path, server, closed) for root in (fresh, kept)]
    before = {root: snapshot(root) for root in (fresh, kept)}
    results = run_all([argv for argv, _ in commands])
    for root, (argv, subs), result in zip((fresh, kept), commands, results):
        fragments = [f.format(**subs) for f in case.fragments]
        assert_one_line_error(result, stage_prefix(case.stage), fragments)
        assert snapshot(root) == before[root], "the failed run changed its directory"
    for out in declared_outputs(case.stage, fresh):
        assert not out.exists(), out
    assert any(p.exists() for p in declared_outputs(case.stage, kept))


@pytest.mark.parametrize("command", ["fetch", "predict"])
def test_debug_env_shows_the_traceback(command, good, tmp_path):
    missing = tmp_path / "missing.csv"
    root = tmp_path / "root"
    prepare(command, root, good, with_outputs=False)
    if command == "fetch":
        params = write_params(tmp_path / "params.yaml", tiny_params({"fetch.source": str(missing)}))
        argv = stage_argv("fetch", root, params)
    else:
        argv = predict_argv(root, "--input", str(missing), "--output", str(root / "p.csv"))
    quiet, loud = run_all([argv]), run_all([argv], NNPIPE_DEBUG="1")
    assert_one_line_error(quiet[0], command, [str(missing), "file not found"])
    assert loud[0].returncode not in (0, 2)
    assert "Traceback (most recent call last)" in loud[0].stderr
    assert "PipelineError" in loud[0].stderr and str(missing) in loud[0].stderr
    for out in declared_outputs(command, root) + [root / "p.csv"]:
        assert not out.exists()


# --- 3. artifacts cannot run code --------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker`` (the pickle holds only ``open`` and two strings)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_payload(path: Path, marker: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    """A pickle payload in the format the slot expects to hold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        bomb = np.empty(1, dtype=object)
        bomb[0] = Payload(marker)
        with open(path, "wb") as handle:
            np.savez(handle, X=bomb, y=np.zeros(1, np.int64), W1=bomb, b1=bomb, W2=bomb, b2=bomb)
    elif path.suffix == ".pt":
        import torch

        torch.save(Payload(marker), path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))


def load_unsafely(path: Path) -> None:
    """What a careless loader would do with the slot's file."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=True) as archive:
            archive["X"]
    elif path.suffix == ".pt":
        import torch

        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())


@pytest.mark.parametrize("suffix, protocol", [(".npz", 5), (".pt", 5), (".json", 0),
                                              (".json", 5)])
def test_the_planted_payload_is_live(tmp_path, suffix, protocol):
    """The payload really runs when loaded carelessly, so its absence below means something."""
    marker = tmp_path / "PWNED"
    path = tmp_path / f"slot{suffix}"
    plant_payload(path, marker, protocol)
    assert not marker.exists()
    load_unsafely(path)
    assert marker.exists()


def _model_slot(model: str, name: str) -> str:
    return f"{PATHS['models']}/{model}/{name}"


# (slot, consumer, pickle protocol for raw pickles)
ARTIFACT_CASES = [
    (f"{PATHS['processed']}/train.npz", "train_numpy_mlp", 5),
    (f"{PATHS['processed']}/val.npz", "train_numpy_mlp", 5),
    (f"{PATHS['processed']}/train.npz", "train_torch_mlp", 5),
    (f"{PATHS['processed']}/test.npz", "evaluate", 5),
    (f"{PATHS['overfit_data']}/val.npz", "evaluate", 5),
    (_model_slot("numpy_mlp", "weights.npz"), "evaluate", 5),
    (_model_slot("torch_mlp", "weights.npz"), "plot_model@torch_mlp", 5),
    (_model_slot("numpy_mlp", "weights.npz"), "predict", 5),
    (PATHS["preprocess"], "train_numpy_mlp", 0),
    (PATHS["preprocess"], "train_linear", 5),
    (_model_slot("torch_mlp", "config.json"), "evaluate", 5),
    (_model_slot("numpy_mlp", "config.json"), "predict", 0),
    (_model_slot("numpy_mlp", "config.json"), "predict", 5),
]


@pytest.mark.parametrize("slot, consumer, protocol", ARTIFACT_CASES,
                         ids=[f"{c}-{s}-p{p}" for s, c, p in ARTIFACT_CASES])
def test_pickle_in_an_artifact_is_refused_by_its_consumer(good, tmp_path, slot, consumer,
                                                          protocol):
    root, marker = tmp_path / "root", tmp_path / "PWNED"
    prepare(consumer, root, good, with_outputs=False)
    if consumer == "predict":
        argv = predict_argv(root, "X1=0.1", "X2=0.1")
    else:
        assert any((root / slot).is_relative_to(dep) for dep in stage_data_deps(consumer, root))
        argv = stage_argv(consumer, root, good.params)
    plant_payload(root / slot, marker, protocol)
    before = snapshot(root)
    (result,) = run_all([argv])
    assert_one_line_error(result, stage_prefix(consumer), [str(root / slot)])
    assert not marker.exists(), "unpickling ran the payload"
    assert snapshot(root) == before
    for out in declared_outputs(consumer, root):
        assert not out.exists()


# --- 5. numerical guards -----------------------------------------------------------------------

DIVERGING = {
    "train_torch_mlp-lr_1e20": ("train_torch_mlp", {"train_torch_mlp.lr": 1e20}),
    # (with fewer epochs the loss only grows to ~1e200: huge, but finite)
    "train_numpy_mlp-lr_1e6": ("train_numpy_mlp", {"train_numpy_mlp.lr": 1e6,
                                                   "train_numpy_mlp.init_scale": 1.0,
                                                   "train_numpy_mlp.epochs": 200}),
    "train_torch_mlp-lr_1e38": ("train_torch_mlp", {"train_torch_mlp.lr": 1e38}),
    "train_linear-lr_1e38": ("train_linear", {"train_linear.lr": 1e38}),
}


@pytest.fixture(scope="module")
def diverged(good, tmp_path_factory) -> dict[str, tuple[Result, Path, dict]]:
    """Every DIVERGING row run at once: name -> (result, its root, the root before the run)."""
    roots, argvs, before = {}, [], {}
    for name, (stage, changes) in DIVERGING.items():
        tmp = tmp_path_factory.mktemp("diverge")
        roots[name] = tmp / "root"
        prepare(stage, roots[name], good, with_outputs=False)
        before[name] = snapshot(roots[name])
        params = write_params(tmp / "params.yaml", tiny_params(changes))
        argvs.append(stage_argv(stage, roots[name], params))
    return {name: (result, roots[name], before[name])
            for name, result in zip(DIVERGING, run_all(argvs))}


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_stops_with_an_error_naming_stage_and_epoch(name, diverged):
    result, root, before = diverged[name]
    stage = DIVERGING[name][0]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.splitlines()[-1]
    assert errors[0].startswith(f"{stage}: error: {stage}: training diverged at epoch "), errors
    assert "diverged" in errors[0] and "epoch" in errors[0]
    for out in stage_outs(stage, root):  # the model directory and the curves
        assert not out.exists(), out
    assert snapshot(root) == before


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_stderr_holds_only_the_stage_log_and_the_error(name, diverged):
    result, _, _ = diverged[name]
    stage = DIVERGING[name][0]
    assert result.returncode == 2
    strays = [line for line in result.stderr.splitlines() if not line.startswith(f"{stage}: ")]
    assert strays == []


# --- 2. atomic outputs under SIGKILL (real dvc) ------------------------------------------------

ATOMIC_CHANGES = {
    "fetch.samples_per_class": 100,
    "train_linear.epochs": 5, "train_linear.hidden_dims": [16],
    "train_numpy_mlp.epochs": 10000, "train_numpy_mlp.log_every": 1000,
    "train_torch_mlp.epochs": 20, "train_torch_mlp.hidden_dims": [16],
    "overfit_random.samples_per_class": 10, "overfit_random.epochs": 20,
    "plot.grid_size": 21, "plot.max_points": 200,
}


def repo_with_params(path: Path, changes: dict) -> Path:
    path.mkdir()
    copy_repo(path)
    p = copy.deepcopy(BASE_PARAMS)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        p[section][key] = value
    write_params(path / "params.yaml", p)
    run(path, "git", "commit", "-qam", "shrunk params")
    return path


def dvc_popen(repo: Path, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["dvc", *args], cwd=repo, env=env or child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def status(process) -> str | None:
    import psutil

    try:
        return process.status()
    except psutil.NoSuchProcess:
        return None


@pytest.mark.e2e
def test_sigkill_mid_training_leaves_no_partial_output_and_resumes_identically(tmp_path):
    import psutil

    killed = repo_with_params(tmp_path / "killed", ATOMIC_CHANGES)
    clean = repo_with_params(tmp_path / "clean", ATOMIC_CHANGES)
    uninterrupted = dvc_popen(clean, "repro")

    proc = dvc_popen(killed, "repro", "train@numpy_mlp", start_new_session=True)
    log: list[str] = []
    training = threading.Event()
    stage_procs: list = []

    def read() -> None:
        for line in proc.stdout:
            log.append(line)
            if "train_numpy_mlp: Epoch:" in line:
                training.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert training.wait(timeout=120), "".join(log)
        time.sleep(1.5)
        assert proc.poll() is None, "training ended before the kill:\n" + "".join(log)
        stage_procs = psutil.Process(proc.pid).children(recursive=True)
        assert any("stages train --params params.yaml --name numpy_mlp" in " ".join(p.cmdline())
                   for p in stage_procs)
        # The stage itself may run in a fork of the warm server (warmstart.launcher), outside dvc's tree.
        stage_procs += [p for p in map(psutil.Process, forks(os.environ["NNPIPE_WARM_DIR"]))
                        if p.cwd() == str(killed)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    _, alive = psutil.wait_procs(stage_procs, timeout=10)
    assert all(status(p) in (None, psutil.STATUS_ZOMBIE) for p in alive), alive

    time.sleep(0.5)
    assert temp_files(killed) == []
    assert not (killed / PATHS["models"] / "numpy_mlp").exists()
    assert not (killed / PATHS["curves"] / "numpy_mlp.csv").exists()

    resumed = run(killed, "dvc", "repro")
    ran = stages_run(resumed.stdout)
    assert "train@numpy_mlp" in ran and not ran & {"fetch", "split", "scale_encode"}, ran
    out, _ = uninterrupted.communicate(timeout=PROC_TIMEOUT)
    assert uninterrupted.returncode == 0, out

    assert temp_files(killed) == []
    expected = tree_hashes(clean)
    assert f"{PATHS['models']}/numpy_mlp/weights.npz" in expected
    assert tree_hashes(killed) == expected
    assert (killed / "dvc.lock").read_bytes() == (clean / "dvc.lock").read_bytes()


# --- 4. determinism of the default pipeline (real dvc) -----------------------------------------

@pytest.fixture(scope="module")
def default_runs(tmp_path_factory) -> list[Path]:
    """Two fresh copies of the repo, each after a cold `dvc repro` (run side by side).

    The first runs its stages through the warm server (warmstart.launcher), the second as plain
    processes (NNPIPE_WARM=0): the two ways must agree byte for byte.
    """
    copies = [tmp_path_factory.mktemp(f"default{i}") for i in (1, 2)]
    for repo in copies:
        copy_repo(repo)
    procs = [dvc_popen(copies[0], "repro"),
             dvc_popen(copies[1], "repro", env=child_env(NNPIPE_WARM="0"))]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    return copies


@pytest.mark.e2e
def test_default_pipeline_is_byte_identical_in_two_fresh_copies(default_runs):
    first, second = (tree_hashes(repo) for repo in default_runs)
    pngs = [name for name in first if name.endswith(".png")]
    assert len(pngs) == 14, pngs  # data, activations, and three per model
    assert any(name.endswith("model.pt") for name in first)
    differing = sorted(name for name in first.keys() | second.keys()
                       if first.get(name) != second.get(name))
    assert differing == []


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["dvc.lock", "reports/metrics.json", "reports/per_class.json",
                                  "reports/summary.md"])
def test_default_pipeline_reproduces_the_committed_file(default_runs, name):
    """Byte for byte as in the repository (copy_repo copies its work tree)."""
    committed = (ROOT / name).read_bytes()
    for repo in default_runs:
        assert (repo / name).read_bytes() == committed, f"{repo / name} differs"
