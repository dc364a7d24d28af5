"""Reliability: the one-line error contract, stated once as a table of bad inputs.

Bad input (files, URLs, params, arguments) given to a stage (`python -m stages <stage>` with
dvc.yaml's arguments, run in the case's directory) or to `nnpipe.predict`: exit 2, one stderr
line ``<prefix>: error: ...`` naming the culprit (a usage error: argparse's usage line before
it), no traceback, nothing written or overwritten. Every case runs in this process (the
runner's ``run``, predict's ``main``) in the quick loop, twice: in a directory holding only the
stage's inputs (no output appears) and in one holding the good run's outputs too (none is lost
or changed). A sample runs through real processes in the slow loop.

Artifacts that cannot run code, diverging training and a killed `dvc repro`:
tests/test_recovery.py.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

import local_http
from bad_input import (A_DEVICE, A_FIFO, ABSENT, DEV_ZERO, FIFO, IS_DIR, Edit, Make,
                       claims_1e12_elements, fetched, garbage, hard_link_to, json_edit, npz_edit,
                       npz_of, params_text_with, parquet_of, symlink_to, zip_entry,
                       zip_of_non_arrays)
from contract import (AUTO, GOOD_INPUT_CSV, LINEAR, NUMPY, OWN_MODELS_DIR, PREDICTIONS, TORCH,
                      assert_one_line_error, build_good, declared_outputs, flag, in_process,
                      model_file, predict_args, prefix, prepare, run_all, stage_args, train,
                      train_input)
from local_http import good_csv_text
from penguins import RAW_ROW, row_args
from pipeline import MODELS, STAGES, tiny_params, tree_bytes, write_params

HUGE_LABEL = 10 * 2**20  # characters of one class name
AUTO_ROWS = 300_000      # rows a planted preprocess.json claims: auto = 2*rows + D units
GOOD_SHA = hashlib.sha256(good_csv_text().encode()).hexdigest()
RAW = flag("split", "data")          # fetch's output, split's input
SCHEMA = flag("split", "schema")     # fetch's schema
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = (flag("scale_encode", "splits", i) for i in range(3))
CONFUSION = flag(f"plot_model@{TORCH}", "confusion")
ROWS = good_csv_text().split("\n", 1)[1]  # without the header
HEADER = "X1,X2,color\n"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return build_good(tmp_path_factory.mktemp("good") / "good")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:<port> serving good.csv; 404 for anything else, 500 under /error500."""
    yield from local_http.serve_good_csv(tmp_path_factory)


@functools.cache
def huge_label_csv() -> str:
    return good_csv_text() + "1,1," + "x" * HUGE_LABEL + "\n"


def with_gaps(rows: int, gaps: int) -> str:
    """24 rows of c1 and c2, then c3: ``rows`` rows, ``gaps`` of them missing X2."""
    lines = [good_csv_text(rows_per_class=8).rstrip("\n").replace("c3", "c1")]
    return "\n".join(lines + [f"{i},{'' if i < gaps else i},c3" for i in range(rows)]) + "\n"


# --- the table --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad input to ``stage`` (a stage of dvc.yaml, or "predict"). ``source``: fetch.source
    / predict --input content, or a URL template ("{url}", "{closed}"). ``plant``: paths of
    the case's directory replaced (bytes, text, a function making them, an Edit of the good
    file, or a Make). ``changes``: params. ``args``: predict's arguments; ``argv``: a stage's
    dvc.yaml arguments edited. ``params_file``: the whole params.yaml. ``stdin``: a file of
    the directory. ``usage``: argparse's error. Fragments may use {src}, {root}, {params}; a
    fragment that is a tuple: any one of it."""
    stage: str
    fragments: tuple
    source: str | bytes | Callable[[], bytes] | None = None
    plant: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    argv: Callable[[list[str]], list[str]] | None = None
    params_file: Callable[[], bytes] | None = None
    stdin: str | None = None
    usage: bool = False


def _fetch(source, *fragments, **changes) -> Case:
    changes = {k.replace("__", "."): v for k, v in changes.items()}
    if isinstance(source, str) and source.startswith(("{url}", "http://")):
        changes = {"fetch.sha256": GOOD_SHA, **changes}  # a URL source must be pinned
    return Case("fetch", ("{src}", *fragments), source=source, changes=changes)


def _predict(source, *fragments) -> Case:
    return Case("predict", ("{src}", *fragments), source=source)


def _point(*args, model: str | None = None, models_dir: str | None = None,
           fragments=(), **plant) -> Case:
    """predict NAME=VALUE ``args`` (``model`` of ``models_dir``), ``plant`` by file name."""
    where = (("--model", model) if model else ()) + (("--models-dir", models_dir)
                                                     if models_dir else ())
    return Case("predict", tuple(fragments), args=(*where, *args), plant=plant)


def _own(*args, fragments=(), source=None) -> Case:
    """predict with TORCH trained on the penguin table under data.missing=drop and
    handle_unknown=error (contract.OWN_POLICY)."""
    return Case("predict", tuple(fragments), source=source,
                args=("--models-dir", OWN_MODELS_DIR, "--model", TORCH, *args))


def _param(stage: str, changes: dict, *fragments) -> Case:
    return Case(stage, ("{params}", *fragments), changes=changes)


def _section(model: str) -> str:
    return f"train_{model}"


def _registry(*pairs: str) -> Callable[[list[str]], list[str]]:
    """evaluate's argv with its --NAME DATA_DIR pairs replaced by ``pairs``."""
    def edit(argv: list[str]) -> list[str]:
        return argv[:argv.index("--models-dir") + 2] + list(pairs) + argv[argv.index("--headline"):]
    return edit


def _bad_declared(name: str) -> Case:
    """The last params name stage ``name`` declares, broken (the runner validates it)."""
    module = importlib.import_module(STAGES[name].module)
    last = importlib.import_module("stages.__main__").declared(
        module, argparse.Namespace(name=name.partition("@")[2]))[-1]
    if last == "seed":
        return _param(name, {"seed": -1}, "seed=-1")
    if "." in last:
        return _param(name, {last: {"bad": 1}}, f"{last}=")
    return _param(name, {f"{last}.zz": 1}, f"unknown key {last}.zz")


def _inputs_missing(name: str) -> Case:
    """Stage ``name`` where none of its inputs exist: it names the first it reads."""
    deps = STAGES[name].deps
    return Case(name, ("not found", deps), plant={dep: ABSENT for dep in deps})


N, T, L = _section(NUMPY), _section(TORCH), _section(LINEAR)
KINDS = ("X1", "kind")
KINDS_CSV = "X1,kind,color\n"
TRAIN_KINDS = KINDS_CSV + "".join(f"{i},{'ab'[i % 2]},c{i % 3}\n" for i in range(12))


def _kinds(val: str, changes: dict, *fragments, empty=None) -> Case:
    """scale_encode on splits with a categorical column ``kind`` (train: a and b)."""
    typed = dict(features=KINDS, categorical=["kind"], missing="median")
    return Case("scale_encode", fragments, changes={"data.features": list(KINDS), **changes},
                plant={SPLIT_TRAIN: fetched(TRAIN_KINDS, "table", **typed, empty=empty),
                       SPLIT_VAL: fetched(val, "table", **typed),
                       SPLIT_TEST: fetched(TRAIN_KINDS, "table", **typed),
                       SCHEMA: fetched(TRAIN_KINDS, "schema", **typed)})


CASES: dict[str, Case] = {
    # fetch: a user's CSV (path or URL)
    "fetch-missing_file": _fetch("{root}/nothing.csv", "file not found", "fetch.source"),
    "fetch-empty_file": _fetch("", "empty file"),
    "fetch-header_only": _fetch(HEADER, "has a header but no data rows"),
    "fetch-no_header": _fetch("".join(f"{i}.5,{i}.25,c{i % 2}\n" for i in range(12)),
                              "column 'X1' not found", "header row"),
    "fetch-no_header_repeated_value": _fetch("0,0,c1\n" + ROWS, "header row"),
    "fetch-missing_feature": _fetch("X1,X3,color\n" + ROWS, "column 'X2' not found",
                                    "X1, X3, color"),
    "fetch-missing_target": _fetch("X1,X2,label\n" + ROWS, "column 'color' not found"),
    "fetch-non_numeric": _fetch(good_csv_text() + "abc,0.5,c1\n", "column 'X1' row 26",
                                "has value 'abc';"),
    "fetch-nan": _fetch(good_csv_text() + "0.5,nan,c1\n", "column 'X2' row 26",
                        "is missing (empty, NA or nan);", "set data.missing to drop, mean, median"),
    "fetch-empty_value": _fetch(good_csv_text() + ",0.5,c1\n", "column 'X1' row 26"),
    "fetch-inf": _fetch(good_csv_text() + "-inf,0.5,c2\n", "column 'X1' row 26",
                        "has value '-inf';", "finite"),
    "fetch-missing_label": _fetch(good_csv_text() + "0.5,0.5,\n", "column 'color' row 26",
                                  "no label"),
    "fetch-single_class": _fetch(HEADER + "".join(f"{i},{i},c1\n" for i in range(12)),
                                 "column 'color' has 1 class", "c1"),
    "fetch-extra_field_in_every_row": _fetch(  # parsed with an index, every column would shift
        HEADER + "".join(f"{i},{i / 10},{-i / 10},c{i % 3}\n" for i in range(30)),
        "line 2 has 4 fields, the header has 3"),
    "fetch-duplicate_columns": _fetch("X1,X1,color\n" + ROWS, "duplicate column name 'X1'"),
    "fetch-features_name_target": _fetch(good_csv_text(), "data.target 'color'", "data.features",
                                         data__features=["X1", "color"]),
    "fetch-mixed_column_imputed": _fetch(good_csv_text() + "abc,0.5,c1\n",
                                         "column 'X1' row 26 has value 'abc'",
                                         "or categories (list 'X1' in data.categorical)",
                                         data__missing="median"),
    "fetch-all_missing_column": _fetch(HEADER + "".join(f"{i},,c{i % 3}\n" for i in range(12)),
                                       "column 'X2' has no values (every cell is empty, NA or "
                                       "NaN)", data__missing="mean"),
    "fetch-too_many_categories": _fetch(
        "X1,X2,kind,color\n" + "".join(f"{i},{i},k{i},c{i % 3}\n" for i in range(1001)),
        "categorical column 'kind' has 1001 categories, more than the 1000 allowed",
        data__features=["X1", "X2", "kind"]),
    "fetch-categorical_not_a_feature": Case(
        "fetch", ("data.categorical=['X3'] names 'X3', which is not in data.features",),
        source=good_csv_text(), changes={"data.categorical": ["X3"]}),
    "fetch-drop_leaves_a_class_empty": _fetch(
        with_gaps(5, 5), "class 'c3' has no row left (data.missing=drop dropped 5 rows with a "
        "missing feature)", data__missing="drop"),
    "fetch-binary_garbage_5mb": _fetch(garbage, "not a"),
    "fetch-unreachable_url": _fetch("http://127.0.0.1:{closed}/x.csv", "cannot fetch",
                                    fetch__timeout=5),
    "fetch-url_dripping_bytes": _fetch("{url}/drip/body", "no complete answer within 0.2 s",
                                       fetch__timeout=0.2),
    "fetch-http_404": _fetch("{url}/missing.csv", "HTTP 404"),
    "fetch-http_500": _fetch("{url}/error500/good.csv", "HTTP 500"),
    "fetch-dev_zero": _fetch(DEV_ZERO, "not a regular file"),
    "fetch-fifo": _fetch(FIFO, "not a regular file"),
    "fetch-too_large": _fetch(good_csv_text(), "bytes, more than the 104 allowed",
                              "fetch.max_mb", fetch__max_mb=0.0001),
    "fetch-sha256_mismatch": _fetch("{url}/good.csv", "sha256", "f" * 64, "fetch.sha256",
                                    GOOD_SHA, fetch__sha256="f" * 64),
    "fetch-file_sha256_mismatch": _fetch(good_csv_text(), "sha256", "0" * 64, GOOD_SHA,
                                         fetch__sha256="0" * 64),
    "fetch-url_without_sha256": _fetch("{url}/good.csv", "must be pinned",
                                       f"set fetch.sha256 to {GOOD_SHA}", fetch__sha256=None),
    # the other stages' input files
    "split-class_too_small_for_split": Case(
        "split", (RAW, "class 'c4' has 5 row(s)", "at least 7"),
        plant={RAW: fetched(good_csv_text() + "".join(f"{i},{i},c4\n" for i in range(5)),
                            "table"),
               SCHEMA: fetched(good_csv_text() + "".join(f"{i},{i},c4\n" for i in range(5)),
                               "schema")}),
    "split-drop_leaves_a_class_too_small": Case(
        "split", ("class 'c3' has 6 row(s)", "at least 7 per class"),
        changes={"data.missing": "drop"},
        plant={RAW: fetched(with_gaps(9, 3), "table", missing="drop"),
               SCHEMA: fetched(with_gaps(9, 3), "schema", missing="drop")}),
    "split-huge_label": Case("split", (RAW, "class 'xxxxx", "characters"), plant={
        RAW: fetched(huge_label_csv, "table"), SCHEMA: fetched(huge_label_csv, "schema")}),
    "split-binary_garbage_5mb": Case("split", (RAW, "not a readable Parquet file"),
                                     plant={RAW: garbage}),
    "split-schema_is_garbage": Case("split", (SCHEMA, "not valid JSON"), plant={SCHEMA: garbage}),
    "split-raw_is_a_directory": Case("split", (RAW,), plant={RAW: IS_DIR}),
    "scale_encode-split_missing_target": Case(
        "scale_encode", (SPLIT_VAL, "column 'color' not found"),
        plant={SPLIT_VAL: parquet_of(X1=[0.1], X2=[0.2])}),
    "scale_encode-unknown_category": _kinds(
        KINDS_CSV + "1,a,c1\n2,zz,c2\n", {"data.handle_unknown": "error"},
        "val.parquet: column 'kind' row 2: category 'zz' was not in the train split (a, b)",
        "data.handle_unknown=error refuses it (ignore: all zeros)"),
    "scale_encode-missing_cell_not_imputed": _kinds(
        KINDS_CSV + "1,a,c1\n2,,c2\n", {"data.missing": "error"},
        "val.parquet: column 'kind' row 2 is missing; a missing value needs"),
    "scale_encode-column_empty_in_train": _kinds(
        TRAIN_KINDS, {"data.missing": "most_frequent"},
        "train.parquet: column 'kind' has no value in the train split; "
        "data.missing=most_frequent has nothing to impute it from", empty="kind"),
    f"{N}-garbage_npz_5mb": Case(
        train(NUMPY), (train_input(NUMPY, "train"), "not a valid .npz"),
        plant={train_input(NUMPY, "train"): garbage}),
    f"{N}-zip_without_arrays": Case(
        train(NUMPY), (train_input(NUMPY, "train"),),
        plant={train_input(NUMPY, "train"): zip_of_non_arrays}),
    f"{N}-preprocess_is_a_directory": Case(
        train(NUMPY), (train_input(NUMPY, "state"),), plant={train_input(NUMPY, "state"): IS_DIR}),
    f"{_section(AUTO)}-auto_too_wide_for_the_data": Case(
        train(AUTO), (f"hidden_dims=auto gives 2*{AUTO_ROWS}+2=", f"{AUTO_ROWS} rows",
                      "at most 100000"),
        plant={train_input(AUTO, "state"): json_edit(lambda d: d.update(rows=AUTO_ROWS))}),
    "evaluate-weights_garbage_5mb": Case(
        "evaluate", (model_file(LINEAR, "weights.npz"),),
        plant={model_file(LINEAR, "weights.npz"): garbage}),
    "evaluate-three_features_for_a_two_feature_model": Case(
        "evaluate", (train_input(LINEAR, "train"),), plant={train_input(LINEAR, "train"): npz_of(
            X=np.zeros((6, 3)), y=np.arange(6, dtype=np.int64) % 3)}),
    "evaluate-label_out_of_range": Case(
        "evaluate", (train_input(LINEAR, "train"),), plant={train_input(LINEAR, "train"): npz_of(
            X=np.zeros((6, 2)), y=np.full(6, 9, dtype=np.int64))}),
    "plot_model-confusion_not_json": Case(
        f"plot_model@{TORCH}", (CONFUSION, "not valid JSON"), plant={CONFUSION: "[1, 2"}),
    "plot_model-confusion_without_test": Case(
        f"plot_model@{TORCH}", (CONFUSION, TORCH), plant={CONFUSION: '{"train": {}}'}),
    # a stage's arguments: dvc.yaml passes evaluate its ${models} registry as --NAME DIR pairs
    **{f"evaluate-registry_{name}": Case("evaluate", (fragment,), argv=_registry(*pairs),
                                         usage=True) for name, pairs, fragment in (
        ("none", (), "expected --NAME VALUE pairs, one per model"),
        ("no_value", ("--linear",), "expected --NAME VALUE, got --linear"),
        ("no_dashes", ("linear", "data/processed"), "expected --NAME VALUE, got linear"),
        ("not_an_identifier", ("--lin/ear", "data/processed"), "expected --NAME VALUE"),
        ("twice", ("--linear", "a", "--linear", "b"), "--linear given twice"))},
    # params, against a stage that reads the key (a params.yaml outside the case's directory)
    **{f"params-{name}-last_declared": _bad_declared(name) for name in STAGES
       if name != "check_params"},
    "params-check_params_bool_as_int": _param("check_params", {"math.portable": 1},
                                              "math.portable=1"),
    "params-check_params_float_seed": _param("check_params", {"seed": 1234.0}, "seed=1234.0"),
    "params-check_params_float_epochs": _param("check_params", {f"{N}.epochs": 10.0},
                                               f"{N}.epochs=10.0"),
    "params-check_params_unknown_section": _param("check_params", {"unknown_section": {"a": 1}},
                                                  "unknown section unknown_section"),
    "params-unknown_key": _param(train(NUMPY), {f"{N}.lrr": 0.1}, f"unknown key {N}.lrr"),
    "params-unknown_fetch_key": _param("fetch", {"fetch.url": "x"}, "unknown key fetch.url"),
    "params-bad_sha256": _param("fetch", {"fetch.sha256": "abc"}, "fetch.sha256='abc'"),
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
    "params-random_data_too_small_for_the_split": Case(
        "random_data", ("class '0' has 2 row(s)",),
        changes={"random_data.samples_per_class": 2}),
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
    "params-huge_string": _param(train(TORCH), {f"{T}.init": "r" * 10**5},
                                 f"{T}.init='rrrr", "characters"),
    "params-utf16": Case("fetch", ("{params}",),
                         params_file=lambda: yaml.safe_dump(tiny_params()).encode("utf-16")),
    # every stage where none of its inputs exist
    **{f"{name}-inputs_missing": _inputs_missing(name) for name in STAGES
       if STAGES[name].deps and name != "check_params"},
    # predict: a CSV of new points, or NAME=VALUE
    "predict-empty_file": _predict("", "empty file"),
    "predict-header_only": _predict("X1,X2\n", "no data rows"),
    "predict-no_header": _predict("0.1,0.2\n0.3,0.4\n", "missing feature column"),
    "predict-missing_feature": _predict("X1,X3\n0.1,0.2\n", "missing feature column(s) X2"),
    "predict-non_numeric": _predict("X1,X2\n0.1,abc\n", "column 'X2' row 2", "'abc'"),
    "predict-nan": _predict("X1,X2\nnan,0.1\n", "column 'X1' row 2 is missing"),
    "predict-inf": _predict("X1,X2\n0.1,0.2\n0.3,inf\n", "column 'X2' row 3 has value 'inf'; "
                            "features must be finite numbers"),
    "predict-duplicate_columns": _predict("X1,X1,X2\n1,2,3\n", "duplicate column name 'X1'"),
    "predict-extra_field": _predict("X1,X2\n1,2,3\n", "line 2 has 3 field"),
    "predict-missing_field": _predict("X1,X2\n1,2\n3\n", "line 3 has 1 field"),
    "predict-row_overflows_when_scaled": _predict(
        "X1,X2\n0.1,0.2\n1e308,0\n", "row 3 (X1=1e+308, X2=0.0): its scaled values are not finite"),
    "predict-binary_garbage_5mb": _predict(garbage, "not a"),
    "predict-both_features_and_input": Case(
        "predict", ("either NAME=VALUE features or --input",), source=GOOD_INPUT_CSV,
        args=("X1=0", "X2=0")),
    "predict-missing_file": Case("predict", ("{root}/nothing.csv", "file not found"),
                                 args=("--input", "{root}/nothing.csv")),
    "predict-dev_zero": _predict(DEV_ZERO, "not a regular file", "--input"),
    "predict-fifo": _predict(FIFO, "not a regular file"),
    **{f"predict-max_mb_{value}": Case(
        "predict", (f"argument --max-mb: '{value}' is not a number of MB from 1e-06 (one byte) "
                    "to 1048576",), source=GOOD_INPUT_CSV, args=("--max-mb", value), usage=True)
       for value in ("nan", "inf", "1e300", "-1", "0", "1e-300", "abc", "1048577")},
    "predict-arg_nan": _point("X1=nan", "X2=0", fragments=["feature 'X1' is missing; a missing "
                                                          "value needs"]),
    "predict-arg_text": _point("X1=0", "X2=abc", fragments=[
        "feature 'X2' has value 'abc'; features must be finite numbers"]),
    "predict-arg_inf": _point("X1=0.1", "X2=-inf", fragments=[
        "feature 'X2' has value '-inf'; features must be finite"]),
    "predict-arg_unknown_feature": _point("X1=0", "X3=1", fragments=["unknown feature 'X3'",
                                                                    "X1, X2"]),
    "predict-arg_missing_feature": _point("X1=0", fragments=["missing feature(s) X2"]),
    "predict-arg_repeated_feature": _point("X1=0", "X1=1", "X2=0",
                                           fragments=["feature 'X1' given twice"]),
    "predict-arg_without_equals": _point("X1", "X2=0.1", fragments=["'X1'", "NAME=VALUE"]),
    "predict-neither_features_nor_input": _point(
        fragments=["either NAME=VALUE features or --input"]),
    **{f"predict-point_overflows_when_scaled{'_json' * j}": _point(
        *("--json",) * j, "X1=1e308", "X2=-1e308", fragments=[
            "X1=1e+308, X2=-1e+308: its scaled values are not finite; the point is too far "
            "from the data the model was trained on"]) for j in (0, 1)},
    "predict-models_dir_missing": _point("X1=0", "X2=0", models_dir="empty", fragments=[
        f"unknown model '{NUMPY}' in empty", "run `dvc repro` first"]),
    **{f"predict-unknown_model_{i}": _point("X1=0", "X2=0", model=name, fragments=[
        f"(models: {', '.join(sorted(MODELS))})"])
       for i, name in enumerate(("svm", f"../models/{LINEAR}"))},
    "predict-weights_missing": _point("X1=0", "X2=0", model=LINEAR, fragments=[
        model_file(LINEAR, "weights.npz"), "file not found"],
        **{model_file(LINEAR, "weights.npz"): ABSENT}),
    "predict-weights_claim_1e12_elements": _point("X1=0", "X2=0", model=LINEAR, fragments=[
        f"{model_file(LINEAR, 'weights.npz')}: entry W1.npy claims shape (1000000, 1000000) of "
        "float64 (8000000000000 bytes) but holds 64 bytes"],
        **{model_file(LINEAR, "weights.npz"): zip_entry("W1.npy", claims_1e12_elements())}),
    **{f"predict-probabilities_overflow{'_json' * j}": _point(
        *("--json",) * j, "X1=1", "X2=1", model=LINEAR, fragments=[
            "X1=1.0, X2=1.0: the model's probabilities are not finite"],
        **{model_file(LINEAR, "weights.npz"): npz_edit(
            lambda k, v: np.full_like(v, 1e308) if k.startswith("W") else v)}) for j in (0, 1)},
    **{f"predict-scaler_{name}": _point("X1=0.1", "X2=0.1", model=LINEAR, fragments=[
        f"{model_file(LINEAR, 'config.json')}: preprocess.scaler.{key}[{index}] is {shown}"],
        **{model_file(LINEAR, "config.json"): json_edit(
            lambda d, key=key, index=index, value=value:
            d["preprocess"]["scaler"][key].__setitem__(index, value))})
       for name, key, index, value, shown in (
           ("zero_scale", "scale", 0, 0.0, "0.0; it must be a finite number > 0"),
           ("negative_scale", "scale", 1, -1.0, "-1.0; it must be a finite number > 0"),
           ("nan_scale", "scale", 0, float("nan"), "nan; it must be a finite number > 0"),
           ("inf_scale", "scale", 1, float("inf"), "inf; it must be a finite number > 0"),
           ("nan_mean", "mean", 0, float("nan"), "nan; it must be a finite number"))},
    "predict-own_unseen_category": _own(*row_args(island="Atlantis"), fragments=[
        "feature 'island': category 'Atlantis' was not in the train split (Biscoe, Dream, "
        "Torgersen)", "data.handle_unknown=error refuses it"]),
    "predict-own_missing_category": _own(*row_args(sex="NA"), fragments=[
        "feature 'sex' is missing; a missing value needs a model trained with data.missing=mean, "
        "median or most_frequent (this one: data.missing=drop)"]),
    "predict-own_missing_number": _own(*row_args(bill_depth_mm=" "), fragments=[
        "feature 'bill_depth_mm' is missing; a missing value needs a model trained with "
        "data.missing=mean"]),
    "predict-own_text_number": _own(*row_args(bill_depth_mm="deep"), fragments=[
        "feature 'bill_depth_mm' has value 'deep'; features must be finite numbers"]),
    "predict-own_no_column": _own(*row_args()[:-1], fragments=["missing feature(s) body_mass_g"]),
    "predict-own_csv_unseen_category": _own(source=",".join(RAW_ROW) + "\n" + ",".join(
        RAW_ROW.values()) + "\n" + ",".join({**RAW_ROW, "island": "Atlantis"}.values()) + "\n",
        fragments=["{src}: column 'island' row 3: category 'Atlantis'"]),
    "predict-own_csv_missing_category": _own(source=",".join(RAW_ROW) + "\n" + ",".join(
        RAW_ROW.values()) + "\n" + ",".join({**RAW_ROW, "sex": "NA"}.values()) + "\n",
        fragments=["{src}: column 'sex' row 3 is missing; a missing value"]),
    "predict-input_named_like_an_output_column": Case(
        "predict", ("the model's input column 'label' has the name of a column predict writes "
                    "(label, probability, p_c1, p_c2, p_c3)", "use --json"),
        source="p_c2,label\n0.25,-0.5\n", args=("--model", LINEAR), plant={
            model_file(LINEAR, "config.json"): Edit(lambda old: old.replace(
                b'"X1"', b'"label"').replace(b'"X2"', b'"p_c2"'))}),
    # predict's --output: only a regular file is replaced, never the --input file
    "predict-output_without_input": _point("--output", PREDICTIONS, "X1=0", "X2=0",
                                           fragments=["--output needs --input"]),
    "predict-output_dash_without_input": _point("--output", "-", "X1=0", "X2=0",
                                                fragments=["--output needs --input"]),
    **{f"predict-output_is_a_{kind}": Case(
        "predict", (f"--output special: is a {kind}, not a file: refusing to replace it",),
        source=GOOD_INPUT_CSV, args=("--output", "special"),
        plant={"target.csv": "precious\n", "special": make})
       for kind, make in (("symlink", symlink_to("target.csv")), ("directory", IS_DIR),
                          ("FIFO", A_FIFO), ("device", A_DEVICE))},
    **{f"predict-output_is_the_input_{how}": Case(
        "predict", (f"--output {output}: is the --input file ({source})",),
        args=("--input", source, "--output", output), stdin="points.csv" if source == "-" else None,
        plant={"points.csv": GOOD_INPUT_CSV, **plant})
       for how, source, output, plant in (
           ("same_path", "points.csv", "points.csv", {}),
           ("relative_path", "points.csv", "./points.csv", {}),
           ("hard_link", "points.csv", "link.csv", {"link.csv": hard_link_to("points.csv")}),
           ("input_symlink", "alias.csv", "points.csv", {"alias.csv": symlink_to("points.csv")}),
           ("stdin_from_it", "-", "points.csv", {}))},
}


def test_the_table_covers_every_stage_and_predict():
    """Each stage script of dvc.yaml (and predict) has bad-input cases."""
    modules = {STAGES[c.stage].module if c.stage in STAGES else c.stage for c in CASES.values()}
    assert modules == {s.module for s in STAGES.values()} | {"predict"}


# --- running a case ---------------------------------------------------------------------------

def _content(value, old: Path) -> bytes:
    if isinstance(value, Edit):
        return value.change(old.read_bytes())
    value = value() if callable(value) else value
    return value.encode() if isinstance(value, str) else value


def _source(case: Case, tmp_path: Path, root: Path, url: str, closed: int) -> str:
    """fetch.source / --input for ``case``, its file written under ``tmp_path``."""
    if isinstance(case.source, str) and case.source.startswith(("{url}", "http://", "{root}")):
        return case.source.format(url=url, closed=closed, root=root)
    if case.source == DEV_ZERO:
        return DEV_ZERO
    path = tmp_path / ("pipe.csv" if case.source == FIFO else
                       "input.csv" if case.stage == "predict" else "source.csv")
    if case.source == FIFO and not path.exists():
        os.mkfifo(path)
    elif case.source is not None and not path.exists():
        path.write_bytes(_content(case.source, path))
    return str(path) if case.source is not None else ""


def _plant(case: Case, root: Path) -> None:
    for rel, content in case.plant.items():
        if isinstance(content, Make):
            content.make(root / rel, root)
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(_content(content, root / rel))


def case_argv(case: Case, root: Path, tmp_path: Path, url: str, closed: int) -> tuple[list, dict]:
    """(the stage's or predict's arguments, fragment substitutions) for one case in ``root``."""
    source = _source(case, tmp_path, root, url, closed)
    _plant(case, root)
    changes = dict(case.changes)
    if case.stage == "fetch" and case.source is not None:
        changes["fetch.source"] = source
    params = write_params(tmp_path / f"{root.name}.params.yaml", tiny_params(changes))
    if case.params_file:
        params.write_bytes(case.params_file())
    subs = {"src": source, "root": str(root), "params": str(params)}
    if case.stage != "predict":
        argv = stage_args(case.stage, params)
        return (case.argv(argv) if case.argv else argv), subs
    args = [a.format(**subs) for a in case.args]
    if source:
        args += ["--input", source, *(("--output", PREDICTIONS) * ("--output" not in args))]
    return predict_args(*args), subs


def _prefix(case: Case) -> str:
    if not case.usage:
        return prefix(case.stage)
    module = "nnpipe.predict" if case.stage == "predict" else \
        f"stages {STAGES[case.stage].module.split('.')[1]}"
    return f"python -m {module}"


def _check(case: Case, results: dict[Path, Any], before: dict[Path, dict]) -> None:
    """The contract, for the case run in ``fresh`` and in ``kept`` (results by root)."""
    for root, (result, subs) in results.items():
        fragments = [f.format(**subs) if isinstance(f, str) else f for f in case.fragments]
        assert_one_line_error(result, _prefix(case), fragments, case.usage)
        assert tree_bytes(root) == before[root], "the failed run changed its directory"
    fresh, kept = results
    outputs = declared_outputs(case.stage)
    assert not any((fresh / out).exists() for out in outputs)
    assert not outputs or any((kept / out).exists() for out in outputs)
    for root in results:
        if (root / "target.csv").exists():
            assert (root / "target.csv").read_text() == "precious\n"


def _roots(case: Case, good: Path, tmp_path: Path, url: str) -> tuple[dict, dict]:
    """The case's two directories (only the inputs / the outputs too), prepared: their argv
    and substitutions, and their bytes before the run."""
    closed = local_http.closed_port()
    commands, before = {}, {}
    for root, with_outputs in ((tmp_path / "fresh", False), (tmp_path / "kept", True)):
        prepare(case.stage, root, good, with_outputs)
        commands[root] = case_argv(case, root, tmp_path, url, closed)
        before[root] = tree_bytes(root)
    return commands, before


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, good, server, tmp_path,
                                                         monkeypatch):
    """In this process, through the runner's ``run`` (predict's ``main``)."""
    monkeypatch.delenv("NNPIPE_DEBUG", raising=False)
    case = CASES[name]
    commands, before = _roots(case, good, tmp_path, server)
    results = {}
    for root, (argv, subs) in commands.items():
        stdin = open(root / case.stdin, encoding="utf-8") if case.stdin else None
        try:
            results[root] = (in_process(case.stage, argv, root, stdin), subs)
        finally:
            stdin and stdin.close()
    _check(case, results, before)


def _first_of_each_stage() -> list[str]:
    seen: dict[str, str] = {}
    for name, case in CASES.items():
        seen.setdefault(STAGES[case.stage].module if case.stage in STAGES else "predict", name)
    return list(seen.values())


# Through real processes: a case of each stage script, and predict's own ways to fail there
# (numpy's warnings before the line, a symlink replaced, stdin).
SAMPLE = [*_first_of_each_stage(), "predict-point_overflows_when_scaled",
          "predict-output_is_a_symlink", "predict-output_is_the_input_stdin_from_it",
          "evaluate-registry_twice", "params-alias_bomb"]


def command(case: Case, argv: list[str]) -> list[str]:
    """The case as a real process: `python -m stages <stage>` or `python -m nnpipe.predict`."""
    if case.stage == "predict":
        return [sys.executable, "-m", "nnpipe.predict", *argv]
    return STAGES[case.stage].command(argv)


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLE)
def test_bad_input_through_a_real_process(name, good, server, tmp_path):
    """The same case through `python -m stages <stage>` (`python -m nnpipe.predict`)."""
    case = CASES[name]
    commands, before = _roots(case, good, tmp_path, server)
    jobs, stdin = [], []
    for root, (argv, _) in commands.items():
        jobs.append((command(case, argv), root))
        stdin.append(open(root / case.stdin, encoding="utf-8") if case.stdin else None)
    try:
        results = run_all(jobs, stdin=stdin)
    finally:
        for handle in filter(None, stdin):
            handle.close()
    _check(case, {root: (result, subs) for (root, (_, subs)), result
                  in zip(commands.items(), results)}, before)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fetch-missing_file", "predict-missing_file"])
def test_debug_env_shows_the_traceback(name, good, tmp_path):
    """NNPIPE_DEBUG=1 in a real process: the error propagates with its traceback (without
    it: the one line above), and still nothing is written."""
    case = CASES[name]
    root = tmp_path / "root"
    prepare(case.stage, root, good, with_outputs=False)
    argv, subs = case_argv(case, root, tmp_path, "", 0)
    (loud,) = run_all([(command(case, argv), root)], NNPIPE_DEBUG="1")
    assert loud.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in loud.stderr
    assert "PipelineError" in loud.stderr and "nothing.csv" in loud.stderr
    assert not any((root / out).exists() for out in declared_outputs(case.stage))
