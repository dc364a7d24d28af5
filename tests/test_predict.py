"""nnpipe.predict end to end: `python -m nnpipe.predict` against model dirs built by the stages."""
from __future__ import annotations

import contextlib
import copy
import io as _io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nnpipe import models, numpy_mlp, torch_models
from nnpipe import predict as predict_cli
import pipeline

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
REGISTRY = DVC["vars"][0]["models"]           # model -> the data set it trains on
MODELS = tuple(REGISTRY)
TORCH_MODELS = tuple(m for m in MODELS if PARAMS[f"train_{m}"]["backend"] == "torch")
CLASSES = ("c1", "c2", "c3")
SENTENCE = re.compile(r"^predicted: (\S+) \((\d{1,3})%, (\w+)\)$")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """models/<name>/ for every model of the registry, trained by the stage mains on a tiny
    spiral (and overfit_random's random data); torch_mlp with two hidden layers."""
    run = pipeline.Run(tmp_path_factory.mktemp("pipeline"), pipeline.tiny_params({
        "train_numpy_mlp.epochs": 100, "train_torch_mlp.epochs": 30,
        "train_torch_mlp.hidden_dims": [32, 16], "train_torch_mlp.lr": 0.05}))
    run.run([name for name in pipeline.STAGES if name.split("@")[0] in
             ("spiral", "fetch", "split", "scale_encode", "random_data", "train")])
    return run / "models"


def predict(models_dir: Path, *args: str, model: str | None = "torch_mlp", check: bool = True,
            process: bool = False, **run: Any) -> subprocess.CompletedProcess:
    """``python -m nnpipe.predict ARGS``: in this process (its main), or with ``process`` in a
    real one (``run``: more subprocess.run arguments)."""
    argv = (["--model", model] if model else []) + ["--models-dir", str(models_dir), *args]
    if process:
        env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
        result = subprocess.run([sys.executable, "-m", "nnpipe.predict", *argv], cwd=ROOT,
                                text=True, env=env, timeout=120, check=False,
                                **{"capture_output": True, **run})
    else:
        out, err, code = _io.StringIO(), _io.StringIO(), 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                predict_cli.main(argv)
            except SystemExit as exc:
                code = exc.code
        result = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if check:
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    return result


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("NNPIPE_DEBUG", raising=False)


def features_of(models_dir: Path, model: str) -> tuple[str, ...]:
    return models.load(str(models_dir / model)).preprocessor.features


def grid_csv(path: Path, features=("X1", "X2"), n=7) -> np.ndarray:
    """A CSV of n*n points over [-1, 1]^2 (plus an extra column predict ignores)."""
    a, b = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    X = np.c_[a.ravel(), b.ravel()]
    frame = pd.DataFrame(X, columns=list(features))
    frame["note"] = "x"
    frame.to_csv(path, index=False)
    return X


# --- one point --------------------------------------------------------------------------------

@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["main", "process"])
def test_one_point_prints_the_prediction_in_neutral_words(models_dir, process):
    result = predict(models_dir, "X1=0.1", "X2=0.1", process=process)
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    match = SENTENCE.match(lines[0])
    assert match, lines[0]
    assert match.group(1) in CLASSES and match.group(3) == "torch_mlp"
    assert 33 <= int(match.group(2)) <= 100  # the top class of three has at least 1/3


def test_one_point_sentence_agrees_with_json(models_dir):
    text = predict(models_dir, "X2=-0.4", "X1=0.3").stdout  # any order of NAME=VALUE
    data = json.loads(predict(models_dir, "--json", "X1=0.3", "X2=-0.4").stdout)
    (record,) = data["predictions"]
    assert SENTENCE.match(text.strip()).group(1) == record["label"]
    assert text.strip().endswith(f" ({record['probability'] * 100:.0f}%, torch_mlp)")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_is_selectable_and_json_is_a_distribution(models_dir, model):
    data = json.loads(predict(models_dir, "--json", "X1=0.25", "X2=-0.5", model=model).stdout)
    assert data["model"] == model
    (record,) = data["predictions"]
    assert set(record) == {"features", "label", "probability", "probabilities"}
    assert record["features"] == {"X1": 0.25, "X2": -0.5}
    classes = models.load(str(models_dir / model)).preprocessor.classes
    assert list(record["probabilities"]) == sorted(classes)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0 <= p <= 1 for p in record["probabilities"].values())
    assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    assert record["probability"] == record["probabilities"][record["label"]]


# --- a CSV of points --------------------------------------------------------------------------

def test_input_csv_prints_a_csv(models_dir, tmp_path):
    X = grid_csv(tmp_path / "points.csv", n=4)
    frame = pd.read_csv(_io.StringIO(predict(models_dir, "--input",
                                             str(tmp_path / "points.csv")).stdout))
    assert list(frame.columns) == ["X1", "X2", "label", "probability",
                                   *(f"p_{c}" for c in CLASSES)]
    assert len(frame) == 16
    np.testing.assert_allclose(frame[["X1", "X2"]].to_numpy(), X)
    proba = frame[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert frame["label"].tolist() == [CLASSES[i] for i in proba.argmax(axis=1)]
    np.testing.assert_allclose(frame["probability"], proba.max(axis=1))


def test_output_writes_the_csv_file(models_dir, tmp_path):
    grid_csv(tmp_path / "points.csv", n=3)
    out = tmp_path / "out" / "pred.csv"
    result = predict(models_dir, "--input", str(tmp_path / "points.csv"), "--output", str(out),
                     model="numpy_mlp")
    assert result.stdout == ""
    frame = pd.read_csv(out)
    assert len(frame) == 9 and {"label", "probability", "p_c1", "p_c2", "p_c3"} <= set(frame)
    assert sorted(os.listdir(out.parent)) == ["pred.csv"]


# --- NumPy inference agrees with torch --------------------------------------------------------

@pytest.mark.parametrize("model", TORCH_MODELS)
def test_predictions_equal_torchs_own_forward_pass(models_dir, tmp_path, model):
    X_raw = grid_csv(tmp_path / "points.csv", n=9)
    out = tmp_path / "pred.csv"
    predict(models_dir, "--input", str(tmp_path / "points.csv"), "--output", str(out),
            model=model)
    frame = pd.read_csv(out)

    loaded = models.load(str(models_dir / model))
    module = torch_models.load(str(models_dir / model))
    X = torch.as_tensor(loaded.preprocessor.transform(X_raw), dtype=torch.float32)
    with torch.no_grad():
        expected = torch.softmax(module(X), dim=1).numpy()
    got = frame[[f"p_{c}" for c in loaded.preprocessor.classes]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.95  # ties aside


def test_numpy_mlp_predictions_equal_its_training_forward_pass(models_dir, tmp_path):
    X_raw = grid_csv(tmp_path / "points.csv", n=5)
    out = tmp_path / "pred.csv"
    predict(models_dir, "--input", str(tmp_path / "points.csv"), "--output", str(out),
            model="numpy_mlp")
    loaded = models.load(str(models_dir / "numpy_mlp"))
    scores = numpy_mlp.NumpyMLP(dict(loaded.weights)).scores(loaded.preprocessor.transform(X_raw))
    got = pd.read_csv(out)[[f"p_{c}" for c in CLASSES]].to_numpy()
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))  # softmax, written out
    np.testing.assert_allclose(got, shifted / shifted.sum(axis=1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_a_rows_probabilities_are_the_same_bytes_in_a_file_of_any_size(models_dir, model):
    """Batch-independent inference: one row alone, and first, in the middle and last of
    files of 1, 7, 999 and 4097 rows, gets the same bytes, for every model of the registry."""
    loaded = models.load(str(models_dir / model))
    rng = np.random.default_rng(5)
    row = rng.normal(size=(1, len(loaded.preprocessor.inputs)))
    alone = predict_cli.predict(loaded, row).proba[0].tobytes()
    for n in (1, 7, 999, 4097):
        for at in sorted({0, n // 2, n - 1}):
            rows = rng.normal(size=(n, row.shape[1]))
            rows[at] = row[0]
            assert predict_cli.predict(loaded, rows).proba[at].tobytes() == alone, (n, at)


def test_trained_models_learned_something(models_dir, tmp_path):
    """Points on the outer half of the spiral mostly get their own arm's class."""
    raw = pd.read_csv(models_dir.parent / "data/spiral.csv")
    outer = raw[np.hypot(raw["X1"], raw["X2"]) > 0.6]
    outer[["X1", "X2"]].to_csv(tmp_path / "outer.csv", index=False)
    out = tmp_path / "pred.csv"
    predict(models_dir, "--input", str(tmp_path / "outer.csv"), "--output", str(out),
            model="numpy_mlp")
    assert (pd.read_csv(out)["label"].to_numpy() == outer["color"].to_numpy()).mean() > 0.6


# --- errors: exit 2, one line, no traceback ---------------------------------------------------

def expect_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("predict: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["X1=0.1", "X3=0.2"], ["unknown feature 'X3'", "X1, X2"]),
    (["X1=0.1"], ["missing feature(s) X2"]),
    (["X1=abc", "X2=0.1"], ["feature 'X1' has value 'abc'; features must be finite numbers"]),
    (["X1=nan", "X2=0.1"], ["feature 'X1' is missing; a missing value needs"]),
    (["X1=0.1", "X2=-inf"], ["feature 'X2' has value '-inf'; features must be finite"]),
    (["X1", "X2=0.1"], ["'X1'", "NAME=VALUE"]),
    ([], ["either NAME=VALUE features or --input"]),
], ids=["unknown", "missing", "non_numeric", "nan", "inf", "no_equals", "neither"])
def test_bad_features(models_dir, args, fragments):
    expect_error(predict(models_dir, *args, check=False), *fragments)


def test_both_features_and_input(models_dir, tmp_path):
    grid_csv(tmp_path / "points.csv", n=2)
    expect_error(predict(models_dir, "--input", str(tmp_path / "points.csv"), "X1=0", "X2=0",
                         check=False), "either NAME=VALUE features or --input")


def test_missing_model_dir(tmp_path):
    expect_error(predict(tmp_path / "empty", "X1=0", "X2=0", check=False),
                 f"unknown model 'torch_mlp' in {tmp_path / 'empty'}", "run `dvc repro` first")


def test_missing_weights_file(models_dir, tmp_path):
    shutil.copytree(models_dir / "linear", tmp_path / "linear")
    os.remove(tmp_path / "linear" / "weights.npz")
    expect_error(predict(tmp_path, "X1=0", "X2=0", model="linear", check=False),
                 str(tmp_path / "linear" / "weights.npz"), "file not found")


def test_csv_missing_a_feature_column(models_dir, tmp_path):
    (tmp_path / "points.csv").write_text("X1,Z\n0.1,0.2\n")
    out = tmp_path / "pred.csv"
    expect_error(predict(models_dir, "--input", str(tmp_path / "points.csv"), "--output",
                         str(out), check=False),
                 str(tmp_path / "points.csv"), "missing feature column(s) X2")
    assert not out.exists()


def test_csv_with_a_bad_value(models_dir, tmp_path):
    (tmp_path / "points.csv").write_text("X1,X2\n0.1,0.2\n0.3,inf\n")
    expect_error(predict(models_dir, "--input", str(tmp_path / "points.csv"), check=False),
                 "column 'X2' row 3 has value 'inf'; features must be finite numbers")


def test_unknown_model_name_names_the_models_there(models_dir):
    for name in ("svm", "../models/linear"):
        result = predict(models_dir, "X1=0", "X2=0", model=name, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().endswith(f"(models: {', '.join(sorted(MODELS))})"), \
            result.stderr


# --- outputs: only a regular file is replaced; - is stdout --------------------------------------

@pytest.fixture
def points(tmp_path) -> Path:
    grid_csv(tmp_path / "points.csv", n=3)
    return tmp_path / "points.csv"


def _special(tmp_path: Path, kind: str) -> Path:
    import stat

    path = tmp_path / "special"
    if kind == "symlink":
        (tmp_path / "target.csv").write_text("precious\n")
        path.symlink_to(tmp_path / "target.csv")
    elif kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        try:  # a /dev/null of our own, never the real one
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    return path


@pytest.mark.parametrize("kind", ["symlink", "directory", "FIFO", "device"])
def test_output_never_replaces_a_symlink_device_fifo_or_directory(models_dir, points, tmp_path,
                                                                 kind):
    path = _special(tmp_path, kind)
    before = os.lstat(path)
    listing = sorted(os.listdir(tmp_path))
    expect_error(predict(models_dir, "--input", str(points), "--output", str(path), check=False),
                 f"--output {path}: is a {kind}, not a file: refusing to replace it")
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(os.listdir(tmp_path)) == listing
    if kind == "symlink":
        assert (tmp_path / "target.csv").read_text() == "precious\n"


@pytest.mark.slow
def test_output_symlink_is_one_line_in_a_real_process(models_dir, points, tmp_path):
    path = _special(tmp_path, "symlink")
    expect_error(predict(models_dir, "--input", str(points), "--output", str(path),
                         check=False, process=True), "is a symlink, not a file")
    assert path.is_symlink() and (tmp_path / "target.csv").read_text() == "precious\n"


def test_output_dash_is_stdout(models_dir, points, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listing = sorted(os.listdir(tmp_path))
    to_stdout = predict(models_dir, "--input", str(points), "--output", "-").stdout
    assert to_stdout == predict(models_dir, "--input", str(points)).stdout
    assert to_stdout.startswith("X1,X2,label,probability,")
    assert sorted(os.listdir(tmp_path)) == listing  # no file named "-"


def test_output_dash_without_input_is_refused(models_dir):
    expect_error(predict(models_dir, "--output", "-", "X1=0", "X2=0", check=False),
                 "--output needs --input")


def test_input_dash_reads_stdin(models_dir, points, monkeypatch):
    monkeypatch.setattr("sys.stdin", _io.TextIOWrapper(_io.BytesIO(points.read_bytes())))
    assert predict(models_dir, "--input", "-").stdout == \
        predict(models_dir, "--input", str(points)).stdout


@pytest.mark.parametrize("how", ["same_path", "relative_path", "hard_link", "input_symlink",
                                 "stdin_from_it"])
def test_output_that_is_the_input_file_is_refused_before_writing(models_dir, points, tmp_path,
                                                                 monkeypatch, how):
    before = points.read_bytes()
    monkeypatch.chdir(tmp_path)
    source, output = str(points), str(points)
    if how == "relative_path":
        output = f"./{points.name}"
    elif how == "hard_link":
        os.link(points, tmp_path / "link.csv")
        output = str(tmp_path / "link.csv")
    elif how == "input_symlink":
        (tmp_path / "alias.csv").symlink_to(points)
        source = str(tmp_path / "alias.csv")
    elif how == "stdin_from_it":
        monkeypatch.setattr("sys.stdin", open(points, encoding="utf-8"))  # noqa: SIM115
        source = "-"
    expect_error(predict(models_dir, "--input", source, "--output", output, check=False),
                 f"--output {output}: is the --input file ({source})")
    assert points.read_bytes() == before


@pytest.mark.slow
def test_an_input_url_dripping_bytes_stops_at_the_deadline(models_dir, tmp_path, monkeypatch):
    import local_http
    from nnpipe import source

    read = source.read_source
    monkeypatch.setattr(source, "read_source", lambda *a, **k: read(*a, **{**k, "timeout": 1.5}))
    with local_http.serve(tmp_path) as url:
        start = time.monotonic()
        expect_error(predict(models_dir, "--input", f"{url}/drip/body", check=False),
                     f"{url}/drip/body: cannot fetch (no complete answer within 1.5 s)")
    assert time.monotonic() - start < 2


@pytest.fixture
def clashing(model_copy) -> Path:
    """The linear model with its inputs renamed label and p_c2: names of predict's columns."""
    path = model_copy / "config.json"
    path.write_text(path.read_text().replace('"X1"', '"label"').replace('"X2"', '"p_c2"'))
    return model_copy.parent


def test_inputs_named_like_predicts_columns_are_kept_apart_or_refused(clashing, tmp_path):
    (tmp_path / "in.csv").write_text("p_c2,label\n0.25,-0.5\n")
    for args in (("label=-0.5", "p_c2=0.25"), ("--input", str(tmp_path / "in.csv"))):
        (record,) = json.loads(predict(clashing, "--json", *args, model="linear").stdout)[
            "predictions"]
        assert record["features"] == {"label": -0.5, "p_c2": 0.25}
        assert record["label"] in CLASSES and set(record["probabilities"]) == set(CLASSES)
    assert SENTENCE.match(predict(clashing, "label=-0.5", "p_c2=0.25", model="linear").stdout)
    expect_error(predict(clashing, "--input", str(tmp_path / "in.csv"), "--output",
                         str(tmp_path / "out.csv"), model="linear", check=False),
                 "the model's input column 'label' has the name of a column predict writes "
                 "(label, probability, p_c1, p_c2, p_c3)", "use --json")
    assert not (tmp_path / "out.csv").exists()


# --- no NaN answers -----------------------------------------------------------------------------

@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["sentence", "json"])
def test_a_point_whose_scaled_values_overflow_is_refused(models_dir, json_flag):
    expect_error(predict(models_dir, *json_flag, "X1=1e308", "X2=-1e308", check=False),
                 "X1=1e+308, X2=-1e+308: its scaled values are not finite; the point is too "
                 "far from the data the model was trained on")


@pytest.mark.slow
def test_an_overflowing_point_is_one_line_in_a_real_process(models_dir):
    """No RuntimeWarning lines from numpy before the error."""
    expect_error(predict(models_dir, "X1=1e308", "X2=-1e308", check=False, process=True),
                 "X1=1e+308, X2=-1e+308: its scaled values are not finite")


def test_a_csv_row_whose_scaled_values_overflow_is_refused(models_dir, tmp_path):
    (tmp_path / "points.csv").write_text("X1,X2\n0.1,0.2\n1e308,0\n")
    out = tmp_path / "pred.csv"
    expect_error(predict(models_dir, "--input", str(tmp_path / "points.csv"), "--output",
                         str(out), check=False),
                 f"{tmp_path / 'points.csv'}: row 3 (X1=1e+308, X2=0.0): its scaled values "
                 "are not finite")
    assert not out.exists()


@pytest.fixture
def model_copy(models_dir, tmp_path) -> Path:
    """A copy of the linear model to tamper with, under tmp_path/models/linear."""
    shutil.copytree(models_dir / "linear", tmp_path / "models" / "linear")
    return tmp_path / "models" / "linear"


def test_probabilities_that_overflow_are_refused(model_copy):
    from nnpipe.core import files

    weights = files.read_npz(str(model_copy / "weights.npz"))
    weights = {k: np.full_like(v, 1e308) if k.startswith("W") else v for k, v in weights.items()}
    files.write_npz(str(model_copy / "weights.npz"), weights)
    for args in (("X1=1", "X2=1"), ("--json", "X1=1", "X2=1")):
        expect_error(predict(model_copy.parent, *args, model="linear", check=False),
                     "X1=1.0, X2=1.0: the model's probabilities are not finite")


@pytest.mark.parametrize("key, index, value, shown", [
    ("scale", 0, 0.0, "0.0; it must be a finite number > 0"),
    ("scale", 1, -1.0, "-1.0; it must be a finite number > 0"),
    ("scale", 0, float("nan"), "nan; it must be a finite number > 0"),
    ("scale", 1, float("inf"), "inf; it must be a finite number > 0"),
    ("mean", 0, float("nan"), "nan; it must be a finite number"),
], ids=["zero_scale", "negative_scale", "nan_scale", "inf_scale", "nan_mean"])
def test_a_model_whose_scaler_state_is_not_finite_is_refused_when_loaded(model_copy, key, index,
                                                                         value, shown):
    path = model_copy / "config.json"
    config = json.loads(path.read_text())
    config["preprocess"]["scaler"][key][index] = value
    path.write_text(json.dumps(config))  # NaN and Infinity as Python's json writes them
    expect_error(predict(model_copy.parent, "X1=0.1", "X2=0.1", model="linear", check=False),
                 f"{path}: preprocess.scaler.{key}[{index}] is {shown}")
    with pytest.raises(predict_cli.PipelineError, match=re.escape(f"{key}[{index}] is")):
        models.load(str(model_copy))


@pytest.mark.parametrize("model", MODELS)
def test_json_output_is_strict_json(models_dir, points, model):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    for args in (("X1=0.5", "X2=-0.5"), ("--input", str(points))):
        text = predict(models_dir, "--json", *args, model=model).stdout
        data = json.loads(text, parse_constant=refuse)
        assert all(math.isfinite(p) for r in data["predictions"] for p in r["probabilities"].values())


def test_json_with_output_writes_the_json_to_the_file(models_dir, points, tmp_path):
    to_stdout = predict(models_dir, "--json", "--input", str(points)).stdout
    out = tmp_path / "predictions.json"
    result = predict(models_dir, "--json", "--input", str(points), "--output", str(out))
    assert result.stdout == "" and out.read_text() == to_stdout


# --- malformed rows, sizes and planted headers --------------------------------------------------

@pytest.mark.parametrize("content, line, fields", [("X1,X2\n1,2,3\n", 2, 3),
                                                   ("X1,X2\n1,2\n3\n", 3, 1)])
def test_input_rows_with_another_field_count_than_the_header_are_refused(models_dir, tmp_path,
                                                                        content, line, fields):
    (tmp_path / "points.csv").write_text(content)
    expect_error(predict(models_dir, "--input", str(tmp_path / "points.csv"), check=False),
                 f"{tmp_path / 'points.csv'}: line {line} has {fields} field")


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "-1", "0", "1e-300", "abc", "1048577"])
def test_max_mb_must_be_a_finite_positive_size(models_dir, points, value):
    result = predict(models_dir, "--input", str(points), "--max-mb", value, check=False)
    assert result.returncode == 2 and result.stdout == ""
    last = result.stderr.splitlines()[-1]
    assert last == (f"python -m nnpipe.predict: error: argument --max-mb: '{value}' is not a "
                    "number of MB from 2**-20 (one byte) to 1048576"), result.stderr


def test_weights_whose_header_claims_1e12_elements_are_refused(model_copy):
    import zipfile

    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    path = model_copy / "weights.npz"
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["W1.npy"] = header.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    expect_error(predict(model_copy.parent, "X1=0", "X2=0", model="linear", check=False),
                 f"{path}: entry W1.npy claims shape (1000000, 1000000) of float64 "
                 "(8000000000000 bytes) but holds 64 bytes")


# --- the environment failing a write (real processes) -------------------------------------------

def _fsize_limit(limit: int):
    def limited() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE,
                           (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return limited


@pytest.mark.slow
def test_a_file_size_limit_hit_while_writing_output_is_one_line(models_dir, tmp_path):
    """RLIMIT_FSIZE for real (EFBIG): one line naming --output, the previous file intact."""
    grid_csv(tmp_path / "points.csv", n=20)
    out = tmp_path / "out" / "pred.csv"
    out.parent.mkdir()
    out.write_text("previous\n")
    result = predict(models_dir, "--input", str(tmp_path / "points.csv"), "--output", str(out),
                     check=False, process=True, preexec_fn=_fsize_limit(4096))
    line = expect_error(result, str(out))
    assert line == f"predict: error: {out}: cannot write (File too large)"
    assert out.read_text() == "previous\n"
    assert os.listdir(out.parent) == ["pred.csv"]


@pytest.mark.slow
@pytest.mark.parametrize("args", [("X1=0.1", "X2=0.1"), ("--json", "X1=0.1", "X2=0.1"),
                                  ("--input", "{points}"), ("--input", "{points}", "--output", "-")],
                         ids=["sentence", "json", "csv", "csv_dash"])
def test_a_full_stdout_is_one_line(models_dir, points, args):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        result = predict(models_dir, *(a.format(points=points) for a in args), check=False,
                         process=True, stdout=full, stderr=subprocess.PIPE, capture_output=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "predict: error: stdout: cannot write (No space left on device)\n"


# --- raw rows of a table with text columns and missing cells ------------------------------------

SPIRAL_DATA = DVC["vars"][0]["spiral_dir"]
OWN_MODELS = tuple(m for m, d in REGISTRY.items() if d == SPIRAL_DATA)
RAW_ROW = {"island": "Biscoe", "sex": "female", "bill_length_mm": "45", "bill_depth_mm": "15",
           "flipper_length_mm": "215", "body_mass_g": "5000"}


@pytest.fixture(scope="module")
def own_models(tmp_path_factory) -> dict[str, Path]:
    """Models of the penguin-like table (tests/penguins.py) under two policies: ``impute``
    (data.missing=median, handle_unknown=ignore) and ``refuse`` (drop, error)."""
    import penguins
    from pipeline import Run, tiny_params, with_changes

    root = tmp_path_factory.mktemp("own")
    source = penguins.write(root / "penguins.csv")
    dirs = {}
    for name, missing, unknown in (("impute", "median", "ignore"), ("refuse", "drop", "error")):
        run = Run(root / name, with_changes(tiny_params(), {
            "fetch.source": str(source), "data.features": penguins.FEATURES,
            "data.target": penguins.TARGET, "data.missing": missing,
            "data.handle_unknown": unknown}))
        run.run(["fetch", "split", "scale_encode", *(f"train@{m}" for m in OWN_MODELS)])
        dirs[name] = run.root / "models"
    return dirs


def row_args(**changes: str) -> list[str]:
    return [f"{k}={v}" for k, v in {**RAW_ROW, **changes}.items()]


@pytest.mark.parametrize("model", OWN_MODELS)
def test_a_raw_row_with_text_is_served_by_every_model(own_models, model):
    data = json.loads(predict(own_models["impute"], "--json", *row_args(), model=model).stdout)
    (record,) = data["predictions"]
    assert record["features"] == {"island": "Biscoe", "sex": "female", "bill_length_mm": 45.0,
                                  "bill_depth_mm": 15.0, "flipper_length_mm": 215.0,
                                  "body_mass_g": 5000.0}
    assert list(record["probabilities"]) == ["Adelie", "Chinstrap", "Gentoo"]
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("gap", ["", "NA", "NaN", "nan"])
def test_a_gap_is_imputed_with_the_train_splits_value(own_models, gap):
    models_dir = own_models["impute"]
    state = models.load(str(models_dir / "torch_mlp")).preprocessor
    fill = state.imputer.fill
    gapped = json.loads(predict(models_dir, "--json", *row_args(sex=gap, bill_depth_mm=gap)).stdout)
    filled = json.loads(predict(models_dir, "--json", *row_args(
        sex=fill["sex"], bill_depth_mm=repr(fill["bill_depth_mm"]))).stdout)
    (a,), (b,) = gapped["predictions"], filled["predictions"]
    assert a["features"]["sex"] is None and a["features"]["bill_depth_mm"] is None
    assert a["probabilities"] == b["probabilities"]


def test_an_unseen_category_is_all_zeros_with_ignore(own_models):
    models_dir = own_models["impute"]
    loaded = models.load(str(models_dir / "torch_mlp"))
    unseen = predict_cli.parse_assignments(row_args(island="Atlantis"), loaded.preprocessor)
    X = loaded.preprocessor.transform(unseen)
    island = [i for i, f in enumerate(loaded.preprocessor.features) if f.startswith("island_")]
    assert len(island) == 3 and X[0, island].tolist() == [0.0, 0.0, 0.0]
    result = predict(models_dir, *row_args(island="Atlantis"), check=False)
    assert result.returncode == 0 and SENTENCE.match(result.stdout.strip())


@pytest.mark.parametrize("json_flag", [False, True], ids=["sentence", "json"])
def test_an_unseen_category_under_ignore_is_a_warning_naming_column_and_value(own_models,
                                                                              json_flag):
    args = ("--json",) * json_flag + tuple(row_args(island="dream"))
    result = predict(own_models["impute"], *args, check=False)
    assert result.returncode == 0
    warning = ("feature 'island': category 'dream' was not in the train split (Biscoe, Dream, "
               "Torgersen): encoded as all zeros (data.handle_unknown=ignore); did you mean "
               "'Dream'?")
    assert result.stderr == f"predict: warning: {warning}\n"
    if json_flag:
        assert json.loads(result.stdout)["warnings"] == [warning]
    clean = predict(own_models["impute"], *("--json",) * json_flag, *row_args())
    assert clean.stderr == "" and (not json_flag or json.loads(clean.stdout)["warnings"] == [])


def test_an_input_csv_of_raw_rows_with_gaps_and_an_unseen_category(own_models, tmp_path):
    rows = pd.DataFrame([RAW_ROW, {**RAW_ROW, "sex": "", "island": "Atlantis"},
                         {**RAW_ROW, "bill_length_mm": "NA", "island": "Dream"}])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = predict(own_models["impute"], "--input", str(tmp_path / "rows.csv"), check=False)
    out = pd.read_csv(_io.StringIO(result.stdout))
    inputs = models.load(str(own_models["impute"] / "torch_mlp")).preprocessor.inputs
    assert list(out.columns[:6]) == list(inputs) and set(inputs) == set(RAW_ROW)
    assert len(out) == 3
    assert out["island"].tolist() == ["Biscoe", "Atlantis", "Dream"]
    assert out["sex"].isna().tolist() == [False, True, False]
    assert result.returncode == 0 and result.stderr == (
        f"predict: warning: {tmp_path / 'rows.csv'}: column 'island' row 3: category 'Atlantis' "
        "was not in the train split (Biscoe, Dream, Torgersen): encoded as all zeros "
        "(data.handle_unknown=ignore)\n")
    one = json.loads(predict(own_models["impute"], "--json", *row_args()).stdout)
    assert out["probability"][0] == one["predictions"][0]["probability"]


@pytest.mark.parametrize("args, fragments", [
    (row_args(island="Atlantis"), ["feature 'island': category 'Atlantis' was not in the train "
                                   "split (Biscoe, Dream, Torgersen)",
                                   "data.handle_unknown=error refuses it"]),
    (row_args(sex="NA"), ["feature 'sex' is missing; a missing value needs a model "
                          "trained with data.missing=mean, median or most_frequent (this one: "
                          "data.missing=drop)"]),
    (row_args(bill_depth_mm=" "), ["feature 'bill_depth_mm' is missing; a missing value needs a "
                                   "model trained with data.missing=mean"]),
    (row_args(bill_depth_mm="deep"), ["feature 'bill_depth_mm' has value 'deep'; features must "
                                      "be finite numbers"]),
    (row_args()[:-1], ["missing feature(s) body_mass_g"]),
], ids=["unseen_category", "missing_category", "missing_number", "text_number", "no_column"])
def test_a_model_that_imputes_nothing_or_refuses_unknowns_says_so(own_models, args, fragments):
    expect_error(predict(own_models["refuse"], *args, check=False), *fragments)


def test_an_input_csv_row_the_model_refuses_is_named(own_models, tmp_path):
    pd.DataFrame([RAW_ROW, {**RAW_ROW, "island": "Atlantis"}]).to_csv(tmp_path / "rows.csv",
                                                                     index=False)
    expect_error(predict(own_models["refuse"], "--input", str(tmp_path / "rows.csv"),
                         check=False),
                 f"{tmp_path / 'rows.csv'}: column 'island' row 3: category 'Atlantis'")
    pd.DataFrame([RAW_ROW, {**RAW_ROW, "sex": "NA"}]).to_csv(tmp_path / "rows.csv", index=False)
    expect_error(predict(own_models["refuse"], "--input", str(tmp_path / "rows.csv"),
                         check=False),
                 f"{tmp_path / 'rows.csv'}: column 'sex' row 3 is missing; a missing value")
