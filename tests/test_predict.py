"""nnpipe.predict end to end: `python -m nnpipe.predict` against model dirs built by the stages."""
from __future__ import annotations

import contextlib
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
import penguins
import pipeline
from contract import assert_one_line_error
from penguins import RAW_ROW, row_args

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


def expect_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2 and one line ``predict: error: ...`` (the contract table: test_reliability.py)."""
    return assert_one_line_error(result, "predict", fragments)


# --- outputs: only a regular file is replaced; - is stdout --------------------------------------

@pytest.fixture
def points(tmp_path) -> Path:
    grid_csv(tmp_path / "points.csv", n=3)
    return tmp_path / "points.csv"


def test_output_dash_is_stdout(models_dir, points, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listing = sorted(os.listdir(tmp_path))
    to_stdout = predict(models_dir, "--input", str(points), "--output", "-").stdout
    assert to_stdout == predict(models_dir, "--input", str(points)).stdout
    assert to_stdout.startswith("X1,X2,label,probability,")
    assert sorted(os.listdir(tmp_path)) == listing  # no file named "-"


def test_input_dash_reads_stdin(models_dir, points, monkeypatch):
    monkeypatch.setattr("sys.stdin", _io.TextIOWrapper(_io.BytesIO(points.read_bytes())))
    assert predict(models_dir, "--input", "-").stdout == \
        predict(models_dir, "--input", str(points)).stdout


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


def test_inputs_named_like_predicts_columns_are_kept_apart(clashing, tmp_path):
    (tmp_path / "in.csv").write_text("p_c2,label\n0.25,-0.5\n")
    for args in (("label=-0.5", "p_c2=0.25"), ("--input", str(tmp_path / "in.csv"))):
        (record,) = json.loads(predict(clashing, "--json", *args, model="linear").stdout)[
            "predictions"]
        assert record["features"] == {"label": -0.5, "p_c2": 0.25}
        assert record["label"] in CLASSES and set(record["probabilities"]) == set(CLASSES)
    assert SENTENCE.match(predict(clashing, "label=-0.5", "p_c2=0.25", model="linear").stdout)


@pytest.fixture
def model_copy(models_dir, tmp_path) -> Path:
    """A copy of the linear model to tamper with, under tmp_path/models/linear."""
    shutil.copytree(models_dir / "linear", tmp_path / "models" / "linear")
    return tmp_path / "models" / "linear"


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


@pytest.fixture(scope="module")
def own_models(tmp_path_factory) -> Path:
    """Models of the penguin-like table (tests/penguins.py) that impute (data.missing=median)
    and encode an unseen category as zeros (handle_unknown=ignore); the policies that refuse:
    the contract table (tests/test_reliability.py)."""
    root = tmp_path_factory.mktemp("own")
    run = pipeline.Run(root / "run", pipeline.with_changes(pipeline.tiny_params(), {
        "fetch.source": str(penguins.write(root / "penguins.csv")),
        "data.features": penguins.FEATURES, "data.target": penguins.TARGET,
        "data.missing": "median", "data.handle_unknown": "ignore"}))
    run.run(["fetch", "split", "scale_encode", *(f"train@{m}" for m in OWN_MODELS)])
    return run.root / "models"


@pytest.mark.parametrize("model", OWN_MODELS)
def test_a_raw_row_with_text_is_served_by_every_model(own_models, model):
    data = json.loads(predict(own_models, "--json", *row_args(), model=model).stdout)
    (record,) = data["predictions"]
    assert record["features"] == {"island": "Biscoe", "sex": "female", "bill_length_mm": 45.0,
                                  "bill_depth_mm": 15.0, "flipper_length_mm": 215.0,
                                  "body_mass_g": 5000.0}
    assert list(record["probabilities"]) == ["Adelie", "Chinstrap", "Gentoo"]
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("gap", ["", "NA", "NaN", "nan"])
def test_a_gap_is_imputed_with_the_train_splits_value(own_models, gap):
    models_dir = own_models
    state = models.load(str(models_dir / "torch_mlp")).preprocessor
    fill = state.imputer.fill
    gapped = json.loads(predict(models_dir, "--json", *row_args(sex=gap, bill_depth_mm=gap)).stdout)
    filled = json.loads(predict(models_dir, "--json", *row_args(
        sex=fill["sex"], bill_depth_mm=repr(fill["bill_depth_mm"]))).stdout)
    (a,), (b,) = gapped["predictions"], filled["predictions"]
    assert a["features"]["sex"] is None and a["features"]["bill_depth_mm"] is None
    assert a["probabilities"] == b["probabilities"]


def test_an_unseen_category_is_all_zeros_with_ignore(own_models):
    models_dir = own_models
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
    result = predict(own_models, *args, check=False)
    assert result.returncode == 0
    warning = ("feature 'island': category 'dream' was not in the train split (Biscoe, Dream, "
               "Torgersen): encoded as all zeros (data.handle_unknown=ignore); did you mean "
               "'Dream'?")
    assert result.stderr == f"predict: warning: {warning}\n"
    if json_flag:
        assert json.loads(result.stdout)["warnings"] == [warning]
    clean = predict(own_models, *("--json",) * json_flag, *row_args())
    assert clean.stderr == "" and (not json_flag or json.loads(clean.stdout)["warnings"] == [])


def test_an_input_csv_of_raw_rows_with_gaps_and_an_unseen_category(own_models, tmp_path):
    rows = pd.DataFrame([RAW_ROW, {**RAW_ROW, "sex": "", "island": "Atlantis"},
                         {**RAW_ROW, "bill_length_mm": "NA", "island": "Dream"}])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = predict(own_models, "--input", str(tmp_path / "rows.csv"), check=False)
    out = pd.read_csv(_io.StringIO(result.stdout))
    inputs = models.load(str(own_models / "torch_mlp")).preprocessor.inputs
    assert list(out.columns[:6]) == list(inputs) and set(inputs) == set(RAW_ROW)
    assert len(out) == 3
    assert out["island"].tolist() == ["Biscoe", "Atlantis", "Dream"]
    assert out["sex"].isna().tolist() == [False, True, False]
    assert result.returncode == 0 and result.stderr == (
        f"predict: warning: {tmp_path / 'rows.csv'}: column 'island' row 3: category 'Atlantis' "
        "was not in the train split (Biscoe, Dream, Torgersen): encoded as all zeros "
        "(data.handle_unknown=ignore)\n")
    one = json.loads(predict(own_models, "--json", *row_args()).stdout)
    assert out["probability"][0] == one["predictions"][0]["probability"]


