"""Reliability: the failure contract seen from outside, through real processes.

1. Bad input (files, URLs, params) given to the real stage commands (`python -m stages <stage>`
   with dvc.yaml's arguments, run in the case's directory) and to `python -m nnpipe.predict`:
   exit 2, one stderr line naming the culprit, no traceback, nothing written or overwritten.
2. Artifacts cannot run code: a pickle payload planted in each kind of file a consumer loads
   is refused with one line, and its side effect never happens.
3. Numerical guards: a diverging run stops naming the stage and the epoch, writing nothing.
4. The real `dvc repro` of a tiny pipeline in two copies of the repo, side by side: one
   through the warm server and SIGKILLed mid-training (no temp or partial files), then
   resumed; the other uninterrupted with NNPIPE_WARM=0. They end byte-identical, dvc.lock
   included.

Stages, models and paths come from tests/pipeline.py (dvc.yaml's registry): a case picks its
model by what its params section says (backend, activation, hidden_dims), not by name.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import local_http
from e2e_util import copy_repo, run, stages_run
from local_http import good_csv_text
from pipeline import (MODEL_PREFIX, MODELS, PARAMS, ROOT, STAGES, Run, tiny_params, tree_bytes,
                      write_params)
from warm_util import forks

from nnpipe.core import files

pytestmark = pytest.mark.slow

PROC_TIMEOUT = 300
GARBAGE_BYTES = 5 * 2**20


# --- the registry: models picked by what they are, paths as dvc.yaml gives them ---------------

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
RAW = flag("split", "data")          # fetch's output, split's input
SCHEMA = flag("split", "schema")     # fetch's schema
SMALL_CLASS = good_csv_text() + "".join(f"{i},{i},c4\n" for i in range(5))
SPLIT_VAL = flag("scale_encode", "splits", 1)
CONFUSION = flag(f"plot_model@{TORCH}", "confusion")


def upstream(name: str) -> set[str]:
    """The stages whose outputs ``name`` needs, directly or through others."""
    producer = {out: stage for stage, body in STAGES.items() for out in body.outs}
    found: set[str] = set()
    todo = [dep for dep in STAGES[name].deps if dep in producer]
    while todo:
        stage = producer[todo.pop()]
        if stage not in found:
            found.add(stage)
            todo += [dep for dep in STAGES[stage].deps if dep in producer]
    return found


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


def run_all(jobs: list[tuple[list[str], Path]], **env: str) -> list[Result]:
    """Run ``(argv, cwd)`` jobs concurrently and wait for all of them."""
    procs = [subprocess.Popen(argv, cwd=cwd, env=child_env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv, cwd in jobs]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=PROC_TIMEOUT)
        results.append(Result(proc.returncode, out, err))
    return results


def stage_command(stage: str, params: Path) -> list[str]:
    """``python -m stages <stage>`` with dvc.yaml's arguments, reading ``params``."""
    return STAGES[stage].command(STAGES[stage].with_args(params=str(params)))


def predict_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnpipe.predict", "--model", NUMPY, "--models-dir", MODELS_DIR,
            *args]


def prefix(stage: str) -> str:
    return "predict" if stage == "predict" else STAGES[stage].prefix


# --- files ------------------------------------------------------------------------------------

def copy_path(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def tree_hashes(repo: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/, reports/."""
    return {f"{top}/{name}": hashlib.sha256(data).hexdigest()
            for top in ("data", "models", "reports")
            for name, data in tree_bytes(repo / top).items()}


def temp_files(repo: Path) -> list[Path]:
    return [f for top in ("data", "models", "reports") for f in (repo / top).rglob(".*.tmp")]


# --- the good run every case starts from ------------------------------------------------------

GOOD_INPUT_CSV = "X1,X2\n0.1,0.1\n-0.5,0.3\n0.9,-0.9\n"
PREDICTIONS = "predictions.csv"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """The whole pipeline on tiny params (in this process: it is only the cases' input), and a
    good `nnpipe.predict --input --output` result."""
    root = Run(tmp_path_factory.mktemp("good"), tiny_params()).run().root
    (root / "new.csv").write_text(GOOD_INPUT_CSV)
    (result,) = run_all([(predict_command("--input", "new.csv", "--output", PREDICTIONS), root)])
    assert result.returncode == 0, result.stderr
    return root


def prepare(stage: str, root: Path, good: Path, with_outputs: bool) -> None:
    """``root`` holds the stage's data inputs from the good run, and its outputs if asked."""
    if stage == "predict":
        paths = [flag(train(NUMPY), "model-dir"), *([PREDICTIONS] * with_outputs)]
    else:
        paths = [*STAGES[stage].deps, *(STAGES[stage].outs if with_outputs else ())]
    root.mkdir(parents=True, exist_ok=True)
    for rel in paths:
        copy_path(good / rel, root / rel)


def declared_outputs(stage: str, root: Path) -> list[Path]:
    return [root / PREDICTIONS] if stage == "predict" else [root / p for p in STAGES[stage].outs]


def assert_one_line_error(result: Result, prefix: str, fragments=()) -> str:
    """Exit 2, nothing on stdout, exactly ``<prefix>: error: ...`` on stderr, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == "", result.stdout[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert lines[0].startswith(f"{prefix}: error: "), lines[0][:2000]
    assert len(lines[0]) <= 600, f"an error line of {len(lines[0])} characters"
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


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


@dataclass(frozen=True)
class JsonEdit:
    """A planted file: the good run's JSON with these keys set."""
    values: dict[str, Any]

    def apply(self, old: bytes) -> bytes:
        return json.dumps({**json.loads(old), **self.values}).encode()


IS_DIR = "<a directory>"
FIFO = "<a fifo>"         # fetch.source / --input: a named pipe no one writes to
DEV_ZERO = "/dev/zero"   # fetch.source / --input: endless bytes
HUGE_LABEL = 50 * 2**20  # characters of one class name
GOOD_SHA = hashlib.sha256(good_csv_text().encode()).hexdigest()
AUTO_ROWS = 300_000      # rows a planted preprocess.json claims: auto = 2*rows + D units


def huge_label_csv() -> str:
    return good_csv_text() + "1,1," + "x" * HUGE_LABEL + "\n"


def fetched(csv: Callable[[], str] | str, part: str) -> Callable[[], bytes]:
    """fetch's ``table`` (Parquet) or ``schema`` (JSON) for a CSV, as split would read them."""
    def make() -> bytes:
        from nnpipe import data

        typed = data.read_typed((csv() if callable(csv) else csv).encode(), "x", ["X1", "X2"],
                                "color")
        if part == "schema":
            return json.dumps(typed.schema.to_dict()).encode()
        buffer = io.BytesIO()
        pq.write_table(typed.table, buffer)
        return buffer.getvalue()
    return make


def parquet_of(**columns: list) -> Callable[[], bytes]:
    def make() -> bytes:
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns), buffer)
        return buffer.getvalue()
    return make


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
    """One bad input to ``stage`` (a stage of dvc.yaml, or "predict"). ``source``: fetch.source
    / predict --input content, or a URL template ("{url}", "{closed}"). ``plant``: files of
    the case's directory replaced by bad content (bytes, text, a JsonEdit of the good file, or
    IS_DIR). ``changes``: params. ``args``: predict's arguments. ``params_file``: the whole
    params.yaml. Fragments may use {src}, {root} and {params}."""
    stage: str
    fragments: tuple[str, ...]
    source: str | bytes | Callable[[], bytes] | None = None
    plant: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    params_file: Callable[[], bytes] | None = None


def _fetch(source, *fragments, **changes) -> Case:
    changes = {k.replace("__", "."): v for k, v in changes.items()}
    if isinstance(source, str) and source.startswith(("{url}", "http://")):
        changes = {"fetch.sha256": GOOD_SHA, **changes}  # a URL source must be pinned
    return Case("fetch", ("{src}", *fragments), source=source, changes=changes)


def _predict(source, *fragments) -> Case:
    return Case("predict", ("{src}", *fragments), source=source)


def _param(stage: str, changes: dict, *fragments) -> Case:
    return Case(stage, ("{params}", *fragments), changes=changes)


def _section(model: str) -> str:
    return MODEL_PREFIX + model


HEADER = "X1,X2,color\n"
N, T, L = _section(NUMPY), _section(TORCH), _section(LINEAR)
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
    "fetch-duplicate_columns": _fetch("X1,X1,color\n" + ROWS, "duplicate column name 'X1'"),
    "fetch-features_name_target": _fetch(good_csv_text(), "data.target 'color'", "data.features",
                                         data__features=["X1", "color"]),
    "fetch-binary_garbage_5mb": _fetch(garbage, "not a"),
    "fetch-unreachable_url": _fetch("http://127.0.0.1:{closed}/x.csv", "cannot fetch",
                                    fetch__timeout=5),
    "fetch-url_dripping_bytes": _fetch("{url}/drip/body", "no complete answer within 3 s",
                                       fetch__timeout=3),
    "fetch-http_404": _fetch("{url}/missing.csv", "HTTP 404"),
    "fetch-http_500": _fetch("{url}/error500/good.csv", "HTTP 500"),
    "fetch-dev_zero": _fetch(DEV_ZERO, "not a regular file"),
    "fetch-fifo": _fetch(FIFO, "not a regular file"),
    "fetch-too_large": _fetch(good_csv_text(), "bytes, more than the 104 allowed",
                              "fetch.max_mb", fetch__max_mb=0.0001),
    "fetch-sha256_mismatch": _fetch("{url}/good.csv", "sha256", "f" * 64, "fetch.sha256",
                                    GOOD_SHA, fetch__sha256="f" * 64),
    "fetch-url_without_sha256": _fetch("{url}/good.csv", "must be pinned",
                                       f"set fetch.sha256 to {GOOD_SHA}", fetch__sha256=None),
    # the other stages' input files
    "split-class_too_small_for_split": Case(
        "split", (RAW, "class 'c4' has 5 row(s)"),
        plant={RAW: fetched(SMALL_CLASS, "table"), SCHEMA: fetched(SMALL_CLASS, "schema")}),
    "split-huge_label": Case("split", (RAW, "class 'xxxxx", "characters"), plant={
        RAW: fetched(huge_label_csv, "table"), SCHEMA: fetched(huge_label_csv, "schema")}),
    "split-binary_garbage_5mb": Case("split", (RAW, "not a readable Parquet file"),
                                     plant={RAW: garbage}),
    "split-schema_is_garbage": Case("split", (SCHEMA, "not valid JSON"), plant={SCHEMA: garbage}),
    "split-raw_is_a_directory": Case("split", (RAW,), plant={RAW: IS_DIR}),
    "scale_encode-split_missing_target": Case(
        "scale_encode", (SPLIT_VAL, "column 'color' not found"),
        plant={SPLIT_VAL: parquet_of(X1=[0.1], X2=[0.2])}),
    f"{N}-garbage_npz_5mb": Case(
        train(NUMPY), (train_input(NUMPY, "train"), "not a valid .npz"),
        plant={train_input(NUMPY, "train"): garbage}),
    f"{N}-zip_without_arrays": Case(
        train(NUMPY), (train_input(NUMPY, "train"),),
        plant={train_input(NUMPY, "train"): zip_of_non_arrays}),
    f"{N}-preprocess_is_a_directory": Case(
        train(NUMPY), (train_input(NUMPY, "state"),), plant={train_input(NUMPY, "state"): IS_DIR}),
    f"{_section(AUTO)}-auto_too_wide_for_the_data": Case(
        train(AUTO), (f"hidden_dims=auto gives 2*{AUTO_ROWS}+2=", "at most 100000"),
        plant={train_input(AUTO, "state"): JsonEdit({"rows": AUTO_ROWS})}),
    "evaluate-weights_garbage_5mb": Case(
        "evaluate", (model_file(LINEAR, "weights.npz"),),
        plant={model_file(LINEAR, "weights.npz"): garbage}),
    "plot_model-confusion_not_json": Case(
        f"plot_model@{TORCH}", (CONFUSION, "not valid JSON"), plant={CONFUSION: "[1, 2"}),
    # params, against a stage that reads the key (a params.yaml outside the case's directory)
    "params-check_params_bool_as_int": _param("check_params", {"math.portable": 1},
                                              "math.portable=1"),
    "params-unknown_key": _param(train(NUMPY), {f"{N}.lrr": 0.1}, f"unknown key {N}.lrr"),
    "params-wrong_type": _param(train(NUMPY), {f"{N}.epochs": "ten"}, f"{N}.epochs='ten'",
                                "integer"),
    "params-wrong_type_spiral": _param("spiral", {"spiral.samples_per_class": "30"},
                                       "spiral.samples_per_class='30'"),
    "params-bad_seed": _param("split", {"seed": -1}, "seed=-1"),
    "params-negative_lr": _param(train(LINEAR), {f"{L}.lr": -0.01}, f"{L}.lr=-0.01",
                                 "greater than 0"),
    "params-nan_lr": _param(train(NUMPY), {f"{N}.lr": float("nan")}, f"{N}.lr=nan"),
    "params-epochs_0": _param(train(NUMPY), {f"{N}.epochs": 0}, f"{N}.epochs=0"),
    "params-hidden_dims_0": _param(train(NUMPY), {f"{N}.hidden_dims": [0]},
                                   f"{N}.hidden_dims[0]=0"),
    "params-dropout_p_1": _param(train(TORCH), {f"{T}.dropout_p": 1.0}, f"{T}.dropout_p=1.0"),
    "params-split_sum": _param("split", {"split.val_size": 0.25}, "split.train_size",
                               "sum to 1"),
    "params-split_sum_random_data": _param("random_data", {"split.test_size": 0.05},
                                           "split.train_size", "sum to 1"),
    "params-plot_grid_0": _param("plot_data", {"plot.grid_size": 0}, "plot.grid_size=0"),
    "params-binary_garbage_5mb": Case("fetch", ("{params}",), params_file=garbage),
    "params-hidden_dims_1e12": _param(train(NUMPY), {f"{N}.hidden_dims": [10**12]},
                                      f"{N}.hidden_dims[0]=1000000000000", "100000"),
    "params-hidden_dims_weights_1e10": _param(train(TORCH), {f"{T}.hidden_dims": [10**5] * 2},
                                              f"{T}.hidden_dims=[100000, 100000]"),
    "params-epochs_1e9": _param(train(TORCH), {f"{T}.epochs": 10**9},
                                f"{T}.epochs=1000000000", "less than or equal"),
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
    "params-huge_string": _param(train(TORCH), {f"{T}.init": "r" * 10**6},
                                 f"{T}.init='rrrr", "characters"),
    "params-utf16": Case("fetch", ("{params}",),
                         params_file=lambda: yaml.safe_dump(tiny_params()).encode("utf-16")),
    # predict: a CSV of new points, or NAME=VALUE
    "predict-empty_file": _predict("", "empty file"),
    "predict-header_only": _predict("X1,X2\n", "no data rows"),
    "predict-no_header": _predict("0.1,0.2\n0.3,0.4\n", "missing feature column"),
    "predict-missing_feature": _predict("X1,X3\n0.1,0.2\n", "missing feature column(s) X2"),
    "predict-non_numeric": _predict("X1,X2\n0.1,abc\n", "column 'X2' row 2", "'abc'"),
    "predict-nan": _predict("X1,X2\nnan,0.1\n", "column 'X1' row 2 is missing"),
    "predict-inf": _predict("X1,X2\n0.1,inf\n", "column 'X2' row 2 has value 'inf'"),
    "predict-duplicate_columns": _predict("X1,X1,X2\n1,2,3\n", "duplicate column name 'X1'"),
    "predict-binary_garbage_5mb": _predict(garbage, "not a"),
    "predict-missing_file": Case("predict", ("{root}/nothing.csv", "file not found"),
                                 args=("--input", "{root}/nothing.csv")),
    "predict-arg_nan": Case("predict", ("feature 'X1' is missing",), args=("X1=nan", "X2=0")),
    "predict-arg_text": Case("predict", ("feature 'X2'", "'abc'"), args=("X1=0", "X2=abc")),
    "predict-arg_unknown_feature": Case("predict", ("unknown feature 'X3'",),
                                        args=("X1=0", "X3=1")),
    "predict-arg_missing_feature": Case("predict", ("missing feature(s) X2",), args=("X1=0",)),
    "predict-arg_repeated_feature": Case("predict", ("feature 'X1' given twice",),
                                         args=("X1=0", "X1=1", "X2=0")),
    "predict-output_without_input": Case("predict", ("--output needs --input",),
                                         args=("--output", "{root}/" + PREDICTIONS, "X1=0",
                                               "X2=0")),
    "predict-output_is_a_directory": Case("predict", ("--output {root}", "is a directory"),
                                          args=("--input", "{root}/" + model_file(NUMPY,
                                                                                 "config.json"),
                                                "--output", "{root}")),
    "predict-dev_zero": _predict(DEV_ZERO, "not a regular file", "--input"),
    "predict-fifo": _predict(FIFO, "not a regular file"),
}


def test_the_table_covers_every_stage_and_predict():
    """Each stage script of dvc.yaml (and predict) has bad-input cases."""
    modules = {STAGES[c.stage].module if c.stage in STAGES else c.stage for c in CASES.values()}
    assert modules == {s.module for s in STAGES.values()} | {"predict"}


def _content(value, old: Path) -> bytes:
    if isinstance(value, JsonEdit):
        return value.apply(old.read_bytes())
    value = value() if callable(value) else value
    return value.encode() if isinstance(value, str) else value


def _source(case: Case, tmp_path: Path, url: str, closed: int) -> str:
    """fetch.source / --input for ``case``, its file written under ``tmp_path``."""
    if isinstance(case.source, str) and case.source.startswith(("{url}", "http://")):
        return case.source.format(url=url, closed=closed)
    if case.source == DEV_ZERO:
        return DEV_ZERO
    path = tmp_path / ("pipe.csv" if case.source == FIFO else
                       "input.csv" if case.stage == "predict" else "source.csv")
    if case.source == FIFO and not path.exists():
        os.mkfifo(path)
    elif case.source is not None and not path.exists():
        path.write_bytes(_content(case.source, path))
    return str(path) if case.source is not None else ""


def case_command(case: Case, root: Path, tmp_path: Path, url: str,
                 closed: int) -> tuple[list[str], dict]:
    """(argv, fragment substitutions) for one case run in ``root``."""
    source = _source(case, tmp_path, url, closed)
    for rel, content in case.plant.items():
        if content == IS_DIR:
            (root / rel).unlink()
            (root / rel).mkdir()
        else:
            (root / rel).write_bytes(_content(content, root / rel))
    changes = dict(case.changes)
    if case.stage == "fetch" and case.source is not None:
        changes["fetch.source"] = source
    params = write_params(tmp_path / "params.yaml", tiny_params(changes))
    if case.params_file:
        params.write_bytes(case.params_file())
    subs = {"src": source, "root": str(root), "params": str(params)}
    if case.stage != "predict":
        return stage_command(case.stage, params), subs
    args = [a.format(**subs) for a in case.args]
    if source:
        args += ["--input", source, "--output", PREDICTIONS]
    return predict_command(*args), subs


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, good, server, tmp_path):
    """Run twice at once: in a directory holding only the stage's inputs (no output appears),
    and in one holding the good run's outputs too (none is lost or changed)."""
    case = CASES[name]
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    prepare(case.stage, fresh, good, with_outputs=False)
    prepare(case.stage, kept, good, with_outputs=True)
    closed = local_http.closed_port()
    commands = [case_command(case, root, tmp_path, server, closed) for root in (fresh, kept)]
    before = {root: tree_bytes(root) for root in (fresh, kept)}
    results = run_all([(argv, root) for root, (argv, _) in zip((fresh, kept), commands)])
    for root, (_, subs), result in zip((fresh, kept), commands, results):
        fragments = [f.format(**subs) for f in case.fragments]
        assert_one_line_error(result, prefix(case.stage), fragments)
        assert tree_bytes(root) == before[root], "the failed run changed its directory"
    for out in declared_outputs(case.stage, fresh):
        assert not out.exists(), out
    kept_outputs = declared_outputs(case.stage, kept)
    assert not kept_outputs or any(p.exists() for p in kept_outputs)


def test_predict_debug_env_shows_the_traceback(good, tmp_path):
    """NNPIPE_DEBUG=1: predict's error propagates with its traceback (without it: the one line
    of predict-missing_file above; the stages' launcher: tests/test_stages.py)."""
    missing = tmp_path / "missing.csv"
    root = tmp_path / "root"
    prepare("predict", root, good, with_outputs=False)
    argv = predict_command("--input", str(missing), "--output", PREDICTIONS)
    (loud,) = run_all([(argv, root)], NNPIPE_DEBUG="1")
    assert loud.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in loud.stderr
    assert "PipelineError" in loud.stderr and str(missing) in loud.stderr
    assert not (root / PREDICTIONS).exists()


# --- 2. artifacts cannot run code --------------------------------------------------------------

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


# (slot, consumer, pickle protocol for raw pickles): each consumer, each kind of file it loads
ARTIFACT_CASES = [
    (train_input(NUMPY, "train"), train(NUMPY), 5),
    (train_input(NUMPY, "val"), train(NUMPY), 5),
    (train_input(TORCH, "train"), train(TORCH), 5),
    (train_input(NUMPY, "state"), train(NUMPY), 0),
    (train_input(LINEAR, "state"), train(LINEAR), 5),
    (flag(f"plot_model@{NUMPY}", "test"), "evaluate", 5),
    (train_input(AUTO, "val"), "evaluate", 5),
    (model_file(NUMPY, "weights.npz"), "evaluate", 5),
    (model_file(TORCH, "config.json"), "evaluate", 5),
    (model_file(TORCH, "weights.npz"), f"plot_model@{TORCH}", 5),
    (model_file(NUMPY, "weights.npz"), "predict", 5),
    (model_file(NUMPY, "config.json"), "predict", 0),
    (model_file(NUMPY, "config.json"), "predict", 5),
]


@pytest.mark.parametrize("slot, consumer, protocol", ARTIFACT_CASES,
                         ids=[f"{c}-{s}-p{p}" for s, c, p in ARTIFACT_CASES])
def test_pickle_in_an_artifact_is_refused_by_its_consumer(good, tmp_path, slot, consumer,
                                                          protocol):
    root, marker = tmp_path / "root", tmp_path / "PWNED"
    prepare(consumer, root, good, with_outputs=False)
    if consumer == "predict":
        argv = predict_command("X1=0.1", "X2=0.1")
    else:
        assert any(Path(slot).is_relative_to(dep) for dep in STAGES[consumer].deps), slot
        argv = stage_command(consumer, write_params(tmp_path / "params.yaml", tiny_params()))
    plant_payload(root / slot, marker, protocol)
    before = tree_bytes(root)
    (result,) = run_all([(argv, root)])
    assert_one_line_error(result, prefix(consumer), [slot])
    assert not marker.exists(), "unpickling ran the payload"
    assert tree_bytes(root) == before
    for out in declared_outputs(consumer, root):
        assert not out.exists()


# --- 3. numerical guards -----------------------------------------------------------------------

DIVERGING = {  # model, param changes, the train split's X scaled by (params bound lr at 1e6)
    # (with fewer epochs the loss only grows to ~1e200: huge, but finite)
    f"{N}-lr_1e6": (NUMPY, {f"{N}.lr": 1e6, f"{N}.init_scale": 1.0, f"{N}.epochs": 200}, 1.0),
    f"{T}-X_1e300": (TORCH, {f"{T}.lr": 1e6}, 1e300),  # float32 inputs overflow to inf
    f"{L}-X_1e300": (LINEAR, {}, 1e300),
}


@pytest.fixture(scope="module")
def diverged(good, tmp_path_factory) -> dict[str, tuple[Result, Path, dict]]:
    """Every DIVERGING row run at once: name -> (result, its root, the root before the run)."""
    roots, jobs, before = {}, [], {}
    for name, (model, changes, scale) in DIVERGING.items():
        tmp = tmp_path_factory.mktemp("diverge")
        roots[name] = tmp / "root"
        prepare(train(model), roots[name], good, with_outputs=False)
        split = roots[name] / train_input(model, "train")
        arrays = files.read_npz(str(split))
        files.write_npz(str(split), {**arrays, "X": arrays["X"] * scale})
        before[name] = tree_bytes(roots[name])
        params = write_params(tmp / "params.yaml", tiny_params(changes))
        jobs.append((stage_command(train(model), params), roots[name]))
    return {name: (result, roots[name], before[name])
            for name, result in zip(DIVERGING, run_all(jobs))}


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_stops_with_an_error_naming_stage_and_epoch(name, diverged):
    """One error line, the last; before it only the stage's own log lines; nothing written."""
    result, root, before = diverged[name]
    stage = STAGES[train(DIVERGING[name][0])]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if "error:" in line]
    assert errors == lines[-1:], result.stderr
    assert errors[0].startswith(f"{stage.prefix}: error: {stage.prefix}: training diverged at "
                                "epoch "), errors
    assert [line for line in lines if not line.startswith(f"{stage.prefix}: ")] == []
    for out in stage.outs:  # the model directory and the curves
        assert not (root / out).exists(), out
    assert tree_bytes(root) == before


# --- 4. the real dvc repro: SIGKILL mid-training; warm server and NNPIPE_WARM=0 agree ----------

KILLED = train(NUMPY)
# Tiny, but the killed model trains long enough to be caught between two log lines.
REPRO_PARAMS = tiny_params({f"{N}.epochs": 6_000, f"{N}.log_every": 300})


def repo_with_params(path: Path, p: dict) -> Path:
    path.mkdir()
    copy_repo(path)
    write_params(path / "params.yaml", p)
    run(path, "git", "commit", "-qam", "tiny params")
    return path


def dvc_popen(repo: Path, *args: str, **kwargs) -> subprocess.Popen:
    """`dvc` in a copy of the repo: its stages import that copy's code (no PYTHONPATH)."""
    env = child_env(pythonpath=False, **kwargs.pop("env", {}))
    return subprocess.Popen(["dvc", *args], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


@dataclass
class Repros:
    warm: Path            # killed mid-training, then resumed
    cold: Path            # uninterrupted, NNPIPE_WARM=0
    cold_ran: set[str]
    after_kill: list[Path]          # temp files, model dir, curves left by the kill
    stage_procs_alive: list         # the killed stage's processes still running
    resumed_ran: set[str]


def status(process) -> str | None:
    import psutil

    try:
        return process.status()
    except psutil.NoSuchProcess:
        return None


def kill_mid_training(repo: Path) -> tuple[list, list[Path]]:
    """`dvc repro KILLED`, SIGKILLed (with its process group and the stage's fork of the warm
    server) between two of the training's log lines: (its processes still alive, what the
    kill left of the stage's outputs and temp files)."""
    import psutil

    proc = dvc_popen(repo, "repro", KILLED, start_new_session=True)
    log: list[str] = []
    training = threading.Event()
    epoch_line = f"{STAGES[KILLED].prefix}: Epoch:"

    def read() -> None:
        for line in proc.stdout:
            log.append(line)
            if sum(epoch_line in seen for seen in log) >= 2:
                training.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stage_procs: list = []
    try:
        assert training.wait(timeout=PROC_TIMEOUT), "".join(log)
        assert proc.poll() is None, "training ended before the kill:\n" + "".join(log)
        stage_procs = psutil.Process(proc.pid).children(recursive=True)
        # The stage itself may run in a fork of the warm server, outside dvc's process tree.
        stage_procs += [p for p in map(psutil.Process, forks(os.environ["NNPIPE_WARM_DIR"]))
                        if p.cwd() == str(repo)]
        assert any(f"--name {NUMPY}" in " ".join(p.cmdline()) for p in stage_procs)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the fork dies with its client
        proc.wait(timeout=30)
        reader.join(timeout=10)
    _, alive = psutil.wait_procs(stage_procs, timeout=10)
    left = temp_files(repo) + [repo / out for out in STAGES[KILLED].outs if (repo / out).exists()]
    return [p for p in alive if status(p) not in (None, psutil.STATUS_ZOMBIE)], left


@pytest.fixture(scope="module")
def repros(tmp_path_factory) -> Repros:
    """Two copies of the repo on REPRO_PARAMS, run side by side: one killed mid-training and
    resumed through the warm server, one uninterrupted with NNPIPE_WARM=0."""
    warm = repo_with_params(tmp_path_factory.mktemp("repro") / "warm", REPRO_PARAMS)
    cold = repo_with_params(tmp_path_factory.mktemp("repro") / "cold", REPRO_PARAMS)
    uninterrupted = dvc_popen(cold, "repro", env={"NNPIPE_WARM": "0"})
    try:
        alive, left = kill_mid_training(warm)
        resumed = dvc_popen(warm, "repro")
        resumed_out, _ = resumed.communicate(timeout=PROC_TIMEOUT)
        assert resumed.returncode == 0, resumed_out
    finally:
        cold_out, _ = uninterrupted.communicate(timeout=PROC_TIMEOUT)
    assert uninterrupted.returncode == 0, cold_out
    return Repros(warm, cold, stages_run(cold_out), left, alive, stages_run(resumed_out))


def test_sigkill_mid_training_leaves_no_partial_output_and_resumes(repros):
    """The killed stage's processes are gone, it left no temp file and none of its outputs,
    and the next `dvc repro` redoes it without redoing what it needed."""
    assert repros.stage_procs_alive == []
    assert repros.after_kill == []  # no temp file, no model directory, no curves
    assert temp_files(repros.warm) == []
    # What the killed run had finished is kept; the killed stage and the rest run.
    assert repros.resumed_ran == set(STAGES) - upstream(KILLED)


def test_warm_and_cold_repro_are_byte_identical(repros):
    """The resumed warm run and the uninterrupted NNPIPE_WARM=0 run: every output and
    dvc.lock, byte for byte."""
    assert repros.cold_ran == set(STAGES)
    warm, cold = tree_hashes(repros.warm), tree_hashes(repros.cold)
    for model in MODELS:
        assert model_file(model, "weights.npz") in cold
    assert sum(name.endswith(".png") for name in cold) == 2 + 3 * len(MODELS)
    assert sorted(n for n in warm.keys() | cold.keys() if warm.get(n) != cold.get(n)) == []
    assert (repros.warm / "dvc.lock").read_bytes() == (repros.cold / "dvc.lock").read_bytes()
