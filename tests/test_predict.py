"""nnpipe.predict end to end: `python -m nnpipe.predict` against model dirs built by the stages."""
from __future__ import annotations

import copy
import io as _io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nnpipe import models, numpy_mlp, torch_models
from stages import fetch, random_data, scale_encode, split, train

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
REGISTRY = DVC["vars"][0]["models"]           # model -> the data set it trains on
MODELS = tuple(REGISTRY)
TORCH_MODELS = tuple(m for m in MODELS if PARAMS[f"train_{m}"]["backend"] == "torch")
CLASSES = ("c1", "c2", "c3")
SENTENCE = re.compile(r"^The probability that you have (\S+) is (\d{1,3})% \((\w+)\)$")


def tiny_params() -> dict:
    p = copy.deepcopy(PARAMS)
    p["fetch"]["samples_per_class"] = 60
    p["train_linear"].update(epochs=5, hidden_dims=[16])
    p["train_numpy_mlp"].update(epochs=100, hidden_dims=[32])
    p["train_torch_mlp"].update(epochs=30, hidden_dims=[32, 16], lr=0.05)  # two hidden layers
    p["random_data"]["samples_per_class"] = 10
    p["train_overfit_random"].update(epochs=20)
    return p


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """models/<name>/ for every model of the registry, trained by the stage mains on a tiny
    spiral (and overfit_random's random data)."""
    root = tmp_path_factory.mktemp("pipeline")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    P = ["--params", str(params)]
    raw = str(root / "raw.csv")
    splits = [str(root / f"split/{s}.csv") for s in ("train", "val", "test")]
    sets = {d: [str(root / d / f"{s}.npz") for s in ("train", "val", "test")]
            for d in set(REGISTRY.values())}
    spiral, random = "data/processed", "data/overfit_random"
    fetch.main([*P, "--out", raw])
    split.main([*P, "--data", raw, "--train", splits[0], "--val", splits[1], "--test", splits[2]])
    scale_encode.main([*P, "--splits", *splits, "--out", *sets[spiral],
                       "--state", str(root / spiral / "preprocess.json")])
    random_data.main([*P, "--out", *sets[random], "--state", str(root / random / "preprocess.json")])
    for name, data_set in REGISTRY.items():
        train.main([*P, "--name", name, "--train", sets[data_set][0], "--val", sets[data_set][1],
                    "--state", str(root / data_set / "preprocess.json"),
                    "--model-dir", str(root / "models" / name),
                    "--curves", str(root / f"curves/{name}.csv")])
    return root / "models"


def predict(models_dir: Path, *args: str, model: str | None = "torch_mlp",
            check: bool = True) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "nnpipe.predict"]
    if model:
        argv += ["--model", model]
    argv += ["--models-dir", str(models_dir), *args]
    env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    return result


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

def test_one_point_prints_the_lesson_sentence(models_dir):
    result = predict(models_dir, "X1=0.1", "X2=0.1")
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
    assert text.strip().endswith(f" is {record['probability'] * 100:.0f}% (torch_mlp)")


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


def test_trained_models_learned_something(models_dir, tmp_path):
    """Points on the outer half of the spiral mostly get their own arm's class."""
    raw = pd.read_csv(models_dir.parent / "raw.csv")
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
    (["X1=abc", "X2=0.1"], ["feature 'X1'", "'abc' is not a number"]),
    (["X1=nan", "X2=0.1"], ["feature 'X1'", "'nan' is not a finite number"]),
    (["X1=0.1", "X2=-inf"], ["feature 'X2'", "'-inf' is not a finite number"]),
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
                 "column 'X2' row 3", "not a finite number")


def test_unknown_model_name_names_the_models_there(models_dir):
    for name in ("svm", "../models/linear"):
        result = predict(models_dir, "X1=0", "X2=0", model=name, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().endswith(f"(models: {', '.join(sorted(MODELS))})"), \
            result.stderr
