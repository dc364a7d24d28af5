"""Every stage's main(argv), chained in a temp dir exactly as dvc.yaml wires them.

A module-scoped fixture runs the whole pipeline once on tiny params; the tests
check each output's contents, byte-for-byte reproducibility of the training
stages, a user CSV with three features, and the one-line error contract
(exit 2, ``<stage>: error: ...`` on stderr, no traceback, no output written).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import local_http
from local_http import good_csv_text
from e2e_util import with_changes
from nnpipe.core.errors import PipelineError
from stages import (evaluate, fetch, overfit_random, plot_data, plot_model, scale_encode, split,
                    train)

ROOT = Path(__file__).resolve().parents[1]
BASE_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
REGISTRY = DVC["vars"][0]["models"]        # the model registry: model -> its splits' directory
TRAINED = DVC["stages"]["train"]["foreach"]  # model -> trainer kind

MODELS = tuple(REGISTRY)
TRAIN_STAGE = {**{m: f"train_{m}" for m in TRAINED}, "overfit_random": "overfit_random"}
MAINS = {
    "fetch": fetch.main, "split": split.main, "scale_encode": scale_encode.main,
    **{TRAIN_STAGE[m]: train.main for m in TRAINED}, "overfit_random": overfit_random.main,
    "evaluate": evaluate.main, "plot_data": plot_data.main, "plot_model": plot_model.main,
}
TORCH_MODELS = tuple(m for m in MODELS if TRAINED.get(m) != "numpy_mlp")
SPLITS = ("train", "val", "test")
CURVES_HEADER = "epoch,train_loss,train_acc,val_loss,val_acc"
PNG_MAGIC = b"\x89PNG"

SAMPLES_PER_CLASS = 60
CLASSES = ("c1", "c2", "c3")
N_ROWS = SAMPLES_PER_CLASS * len(CLASSES)
OVERFIT_PER_CLASS = 10
EPOCHS = {"linear": 5, "numpy_mlp": 30, "torch_mlp": 10, "overfit_random": 20}


# --- params and paths -------------------------------------------------------------------------

def tiny_params() -> dict:
    """The repo's params.yaml, shrunk so the whole pipeline runs in about a second."""
    p = copy.deepcopy(BASE_PARAMS)
    p["fetch"]["samples_per_class"] = SAMPLES_PER_CLASS
    p["train_linear"].update(epochs=EPOCHS["linear"], hidden_dims=[16])
    p["train_numpy_mlp"].update(epochs=EPOCHS["numpy_mlp"], hidden_dims=[16], log_every=10)
    p["train_torch_mlp"].update(epochs=EPOCHS["torch_mlp"], hidden_dims=[16], log_every=5)
    p["overfit_random"].update(samples_per_class=OVERFIT_PER_CLASS,
                               epochs=EPOCHS["overfit_random"], log_every=10)
    p["plot"].update(grid_size=15, max_points=50)
    return p


def write_params(path: Path, p: dict) -> str:
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return str(path)


class Layout:
    """dvc.yaml's paths under one root directory."""

    def __init__(self, root: Path):
        self.root = root
        self.raw = str(root / "data/raw.csv")
        self.split = {s: str(root / f"data/split/{s}.csv") for s in SPLITS}
        self.processed = {s: str(root / f"data/processed/{s}.npz") for s in SPLITS}
        self.overfit_data = {s: str(root / f"data/overfit_random/{s}.npz") for s in SPLITS}
        self.preprocess = str(root / "models/preprocess.json")
        self.metrics = str(root / "reports/metrics.json")
        self.headline = str(root / "reports/headline.json")
        self.per_class = str(root / "reports/per_class.json")
        self.confusion = str(root / "reports/confusion")
        self.summary = str(root / "reports/summary.md")
        self.predictions = str(root / "reports/predictions")
        self.figures = root / "reports/figures"

    def model_dir(self, name: str) -> str:
        return str(self.root / "models" / name)

    def curves(self, name: str) -> str:
        return str(self.root / "reports/curves" / f"{name}.csv")

    def data_for(self, name: str) -> dict[str, str]:
        return self.overfit_data if name == "overfit_random" else self.processed


def fetch_argv(L: Layout, params: str, out: str | None = None) -> list[str]:
    return ["--params", params, "--out", out or L.raw]


def split_argv(L: Layout, params: str) -> list[str]:
    return ["--params", params, "--data", L.raw,
            "--train", L.split["train"], "--val", L.split["val"], "--test", L.split["test"]]


def scale_encode_argv(L: Layout, params: str) -> list[str]:
    return ["--params", params, "--splits", *L.split.values(),
            "--out", *L.processed.values(), "--state", L.preprocess]


def train_argv(name: str, L: Layout, params: str, model_dir: str | None = None,
               curves: str | None = None, data_out: list[str] | None = None) -> list[str]:
    tail = ["--model-dir", model_dir or L.model_dir(name), "--curves", curves or L.curves(name)]
    if name == "overfit_random":
        return ["--params", params, "--data-out", *(data_out or L.overfit_data.values()), *tail]
    return ["--params", params, "--name", name, "--kind", TRAINED[name],
            "--train", L.processed["train"], "--val", L.processed["val"],
            "--preprocess", L.preprocess, *tail]


def evaluate_argv(L: Layout, names=MODELS) -> list[str]:
    """As dvc.yaml's cmd: the models directory, then ``--NAME DATA_DIR`` per model."""
    argv = ["--models-dir", str(L.root / "models")]
    for name in names:
        argv += [f"--{name}", str(L.root / REGISTRY[name])]
    return argv + ["--headline", L.headline, "--metrics", L.metrics, "--per-class", L.per_class,
                   "--confusion-dir", L.confusion, "--predictions-dir", L.predictions,
                   "--summary", L.summary]


def plot_data_argv(L: Layout, params: str) -> list[str]:
    return ["--params", params, "--data", L.raw,
            "--data-png", str(L.figures / "data.png"),
            "--activations-png", str(L.figures / "activations.png")]


def plot_model_argv(name: str, L: Layout, params: str) -> list[str]:
    data = L.data_for(name)
    return ["--params", params, "--name", name, "--model-dir", L.model_dir(name),
            "--train", data["train"], "--test", data["test"], "--curves", L.curves(name),
            "--confusion", f"{L.confusion}/{name}.json",
            "--boundary-png", str(L.figures / f"{name}_boundary.png"),
            "--curves-png", str(L.figures / f"{name}_curves.png"),
            "--confusion-png", str(L.figures / f"{name}_confusion.png")]


def run_chain(L: Layout, params: str, models=MODELS) -> None:
    """fetch -> split -> scale_encode -> train_* -> evaluate -> plot_data / plot_model."""
    fetch.main(fetch_argv(L, params))
    split.main(split_argv(L, params))
    scale_encode.main(scale_encode_argv(L, params))
    for name in models:
        MAINS[TRAIN_STAGE[name]](train_argv(name, L, params))  # train.main or overfit_random
    evaluate.main(evaluate_argv(L, models))
    plot_data.main(plot_data_argv(L, params))
    for name in models:
        plot_model.main(plot_model_argv(name, L, params))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    L = Layout(root)
    L.params = write_params(root / "params.yaml", tiny_params())
    run_chain(L, L.params)
    return L


def tree_bytes(path: str) -> dict[str, bytes]:
    """Relative file name -> bytes, for a file or every file under a directory."""
    p = Path(path)
    if p.is_file():
        return {p.name: p.read_bytes()}
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def npz_arrays(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


# --- fetch, split, scale_encode ---------------------------------------------------------------

def test_fetch_writes_the_spiral_csv(chain):
    frame = pd.read_csv(chain.raw)
    assert list(frame.columns) == ["X1", "X2", "color"]
    assert len(frame) == N_ROWS
    assert frame["color"].value_counts().to_dict() == {c: SAMPLES_PER_CLASS for c in CLASSES}
    assert frame[["X1", "X2"]].dtypes.tolist() == [np.float64, np.float64]
    # the spiral lies in the unit disc
    assert np.all(np.hypot(frame["X1"], frame["X2"]) <= 1.0 + 1e-12)


def test_split_sizes_are_stratified_and_partition_the_rows(chain):
    raw = pd.read_csv(chain.raw)
    parts = {s: pd.read_csv(chain.split[s]) for s in SPLITS}
    # train_test_split floors 0.7 * 180 (= 125.99999999999999) to 125
    assert {s: len(f) for s, f in parts.items()} == {"train": 125, "val": 27, "test": 28}
    for s in SPLITS:
        counts = parts[s]["color"].value_counts()
        assert sorted(counts.index) == list(CLASSES)
        assert counts.max() - counts.min() <= 1  # stratified
        assert list(parts[s].columns) == ["X1", "X2", "color"]
    rows = lambda f: sorted(map(tuple, f.to_numpy().tolist()))  # noqa: E731
    assert rows(pd.concat(parts.values())) == rows(raw)


def test_scale_encode_writes_npz_and_state(chain):
    state = json.loads(Path(chain.preprocess).read_text())
    assert set(state) == {"features", "scaler", "classes", "class_counts", "class_weights"}
    assert set(state["scaler"]) == {"mean", "scale", "var", "n_samples_seen"}
    assert state["features"] == ["X1", "X2"]
    assert state["classes"] == list(CLASSES)
    train_labels = pd.read_csv(chain.split["train"])["color"]
    counts = [int((train_labels == c).sum()) for c in CLASSES]
    assert state["class_counts"] == counts
    assert state["class_weights"] == pytest.approx([1 / n for n in counts])
    assert state["scaler"]["n_samples_seen"] == len(train_labels)
    for s in SPLITS:
        labels = pd.read_csv(chain.split[s])["color"]
        arrays = npz_arrays(chain.processed[s])
        assert set(arrays) == {"X", "y"}
        assert arrays["X"].shape == (len(labels), 2) and arrays["X"].dtype == np.float64
        assert arrays["y"].shape == (len(labels),) and arrays["y"].dtype == np.int64
        assert [CLASSES[i] for i in arrays["y"]] == labels.tolist()
    X_train = npz_arrays(chain.processed["train"])["X"]
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=1e-12)
    raw_train = pd.read_csv(chain.split["train"])[["X1", "X2"]].to_numpy()
    np.testing.assert_allclose(state["scaler"]["mean"], raw_train.mean(axis=0))


# --- training stages --------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_model_dir_holds_config_and_weights(chain, name):
    directory = Path(chain.model_dir(name))
    expected = {"config.json", "weights.npz"} | ({"model.pt"} if name in TORCH_MODELS else set())
    assert {p.name for p in directory.iterdir()} == expected
    config = json.loads((directory / "config.json").read_text())
    assert set(config) == {"model", "preprocess"}
    spec = config["model"]
    assert spec["name"] == name
    assert spec["kind"] == ("linear" if name == "linear" else "mlp")
    d, c = 2, 3
    h = 2 * OVERFIT_PER_CLASS * 3 + 2 if name == "overfit_random" else 16
    assert (spec["input_dim"], spec["hidden_dims"], spec["num_classes"]) == (d, [h], c)
    weights = npz_arrays(str(directory / "weights.npz"))
    assert {k: v.shape for k, v in weights.items()} == \
        {"W1": (d, h), "b1": (h,), "W2": (h, c), "b2": (c,)}
    assert all(v.dtype == np.float64 and np.isfinite(v).all() for v in weights.values())
    if name in TORCH_MODELS:
        state = torch.load(directory / "model.pt", weights_only=True)
        assert set(state) == {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                              "layers.1.bias"}
        np.testing.assert_array_equal(state["layers.0.weight"].numpy().T, weights["W1"])
        np.testing.assert_array_equal(state["layers.1.bias"].numpy(), weights["b2"])


@pytest.mark.parametrize("name", MODELS)
def test_curves_have_one_row_per_epoch(chain, name):
    text = Path(chain.curves(name)).read_text()
    assert text.splitlines()[0] == CURVES_HEADER
    frame = pd.read_csv(chain.curves(name))
    assert frame["epoch"].tolist() == list(range(EPOCHS[name]))
    for column in ("train_acc", "val_acc"):
        assert frame[column].between(0, 1).all()
    assert (frame[["train_loss", "val_loss"]] > 0).all().all()


def test_numpy_mlp_learns_the_spiral_a_little(chain):
    frame = pd.read_csv(chain.curves("numpy_mlp"))
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]


def test_overfit_random_writes_its_own_splits(chain):
    sizes = []
    for s in SPLITS:
        arrays = npz_arrays(chain.overfit_data[s])
        assert set(arrays) == {"X", "y"}
        assert arrays["X"].shape[1] == 2 and arrays["y"].dtype == np.int64
        assert set(arrays["y"].tolist()) == {0, 1, 2}
        sizes.append(len(arrays["y"]))
    assert sum(sizes) == 3 * OVERFIT_PER_CLASS and sizes[0] == 21


# --- evaluate ---------------------------------------------------------------------------------

def test_metrics_json_is_model_split_figure(chain):
    metrics = json.loads(Path(chain.metrics).read_text())
    assert set(metrics) == set(MODELS)
    for name in MODELS:
        assert set(metrics[name]) == set(SPLITS)
        for s in SPLITS:
            figures = metrics[name][s]
            assert set(figures) == {"accuracy", "precision", "recall", "f1"}
            assert all(isinstance(v, float) and 0 <= v <= 1 for v in figures.values())


def test_headline_is_each_models_test_accuracy(chain):
    """The first columns of `dvc exp show`: model -> {"test_acc"}, the same number as metrics."""
    headline = json.loads(Path(chain.headline).read_text())
    metrics = json.loads(Path(chain.metrics).read_text())
    assert headline == {m: {"test_acc": metrics[m]["test"]["accuracy"]} for m in MODELS}


def test_predictions_match_metrics_and_test_labels(chain):
    metrics = json.loads(Path(chain.metrics).read_text())
    classes = json.loads(Path(chain.preprocess).read_text())["classes"]
    for name in MODELS:
        frame = pd.read_csv(Path(chain.predictions) / f"{name}.csv", dtype=str)
        assert list(frame.columns) == ["actual", "predicted"]
        y_test = npz_arrays(chain.data_for(name)["test"])["y"]
        assert len(frame) == len(y_test)
        model_classes = classes if name != "overfit_random" else ["0", "1", "2"]
        assert frame["actual"].tolist() == [model_classes[i] for i in y_test]
        assert set(frame["predicted"]) <= set(model_classes)
        accuracy = float((frame["actual"] == frame["predicted"]).mean())
        assert metrics[name]["test"]["accuracy"] == pytest.approx(accuracy)


def test_per_class_and_confusion(chain):
    per_class = json.loads(Path(chain.per_class).read_text())
    confusion = {path.stem: json.loads(path.read_text())
                 for path in Path(chain.confusion).glob("*.json")}
    assert set(per_class) == set(MODELS) == set(confusion)
    for name in MODELS:
        test = per_class[name]["test"]
        classes = list(CLASSES) if name != "overfit_random" else ["0", "1", "2"]
        assert list(test) == classes
        for figures in test.values():
            assert set(figures) == {"precision", "recall", "f1", "support"}
        matrix = np.array(confusion[name]["test"]["matrix"])
        assert confusion[name]["test"]["classes"] == classes
        assert matrix.shape == (3, 3)
        assert matrix.sum(axis=1).tolist() == [test[c]["support"] for c in classes]
        assert matrix.sum() == len(npz_arrays(chain.data_for(name)["test"])["y"])


def test_summary_md_has_one_row_per_model(chain):
    metrics = json.loads(Path(chain.metrics).read_text())
    lines = Path(chain.summary).read_text().splitlines()
    assert lines[0] == "## Model comparison (test split)"
    assert "| model | accuracy | precision | recall | f1 |" in lines
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split("|")[1].strip() for row in rows] == list(MODELS)
    for row, name in zip(rows, MODELS):
        assert row.split("|")[2].strip() == f"{metrics[name]['test']['accuracy']:.4f}"


# --- plots ------------------------------------------------------------------------------------

def test_every_figure_is_a_png(chain):
    names = ["data.png", "activations.png"] + [f"{m}_{kind}.png" for m in MODELS
                                               for kind in ("boundary", "curves", "confusion")]
    assert sorted(p.name for p in chain.figures.iterdir()) == sorted(names)
    for name in names:
        data = (chain.figures / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name


# --- determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_training_stage_is_byte_identical_when_rerun(chain, tmp_path, name):
    model_dir, curves = str(tmp_path / "model"), str(tmp_path / "curves.csv")
    data_out = [str(tmp_path / f"{s}.npz") for s in SPLITS]
    MAINS[TRAIN_STAGE[name]](train_argv(name, chain, chain.params, model_dir, curves, data_out))
    first, second = tree_bytes(chain.model_dir(name)), tree_bytes(model_dir)
    assert sorted(first) == sorted(second)
    for file in first:
        assert first[file] == second[file], f"{name}/{file} differs between two runs"
    assert Path(curves).read_bytes() == Path(chain.curves(name)).read_bytes()
    if name == "overfit_random":
        for s, path in zip(SPLITS, data_out):
            assert Path(path).read_bytes() == Path(chain.overfit_data[s]).read_bytes()


def test_data_stages_are_byte_identical_when_rerun(chain, tmp_path):
    L = Layout(tmp_path)
    fetch.main(fetch_argv(L, chain.params))
    split.main(split_argv(L, chain.params))
    scale_encode.main(scale_encode_argv(L, chain.params))
    for ours, theirs in [(L.raw, chain.raw), (L.preprocess, chain.preprocess),
                         *zip(L.split.values(), chain.split.values()),
                         *zip(L.processed.values(), chain.processed.values())]:
        assert Path(ours).read_bytes() == Path(theirs).read_bytes(), ours


@pytest.mark.parametrize("name", MODELS)
def test_mini_batches_are_used_and_deterministic(chain, tmp_path, name):
    params = write_params(tmp_path / "params.yaml", with_changes(
        tiny_params(), {f"{TRAIN_STAGE[name]}.batch_size": 8}))
    runs = []
    for run in ("a", "b"):
        model_dir, curves = str(tmp_path / run / "model"), str(tmp_path / run / "curves.csv")
        data_out = [str(tmp_path / run / f"{s}.npz") for s in SPLITS]
        MAINS[TRAIN_STAGE[name]](train_argv(name, chain, params, model_dir, curves, data_out))
        runs.append({**tree_bytes(model_dir), "curves": Path(curves).read_bytes()})
    assert runs[0] == runs[1]
    # mini-batches really change training: the weights differ from the full-batch run's
    full_batch = tree_bytes(chain.model_dir(name))
    assert runs[0]["weights.npz"] != full_batch["weights.npz"]
    assert runs[0]["config.json"] == full_batch["config.json"]


# --- a user CSV with three features -----------------------------------------------------------

def three_feature_csv(path: Path) -> None:
    rng = np.random.RandomState(0)
    centers = {"lo": (-2.0, 0.0, 1.0), "mid": (0.0, 2.0, -1.0), "hi": (2.0, -2.0, 0.0)}
    rows = []
    for label, center in centers.items():
        for point in rng.randn(20, 3) * 0.5 + center:
            rows.append({"id": len(rows), "a": point[0], "b": point[1], "c": point[2],
                         "label": label})
    pd.DataFrame(rows).sample(frac=1.0, random_state=1).to_csv(path, index=False)


def test_user_csv_with_three_features_runs_the_whole_chain(tmp_path, caplog):
    source = tmp_path / "mine.csv"
    three_feature_csv(source)
    L = Layout(tmp_path / "run")
    (tmp_path / "run").mkdir()
    params = write_params(tmp_path / "params.yaml", with_changes(tiny_params(), {
        "fetch.source": str(source), "data.features": ["a", "b", "c"], "data.target": "label"}))
    models = ("linear", "numpy_mlp", "torch_mlp")
    caplog.set_level(logging.INFO)
    run_chain(L, params, models)

    raw = pd.read_csv(L.raw)
    assert list(raw.columns) == ["a", "b", "c", "label"]  # the extra "id" column is dropped
    assert len(raw) == 60
    assert npz_arrays(L.processed["train"])["X"].shape == (len(pd.read_csv(L.split["train"])), 3)
    assert json.loads(Path(L.preprocess).read_text())["classes"] == ["hi", "lo", "mid"]
    metrics = json.loads(Path(L.metrics).read_text())
    assert set(metrics) == set(models)
    assert metrics["numpy_mlp"]["test"]["accuracy"] > 0.5  # well separated blobs
    for name in models:
        config = json.loads((Path(L.model_dir(name)) / "config.json").read_text())
        assert config["model"]["input_dim"] == 3
        for kind in ("boundary", "curves", "confusion"):
            assert (L.figures / f"{name}_{kind}.png").read_bytes().startswith(PNG_MAGIC)
        assert png_size(L.figures / f"{name}_boundary.png") == (600, 150)  # the placeholder
        skipped = [r.getMessage() for r in caplog.records
                   if r.name == f"plot_model {name}" and "decision boundary skipped" in
                   r.getMessage()]
        assert skipped == [f"decision boundary skipped: it needs exactly 2 features, "
                           f"{name} has 3"]
    assert (L.figures / "data.png").read_bytes().startswith(PNG_MAGIC)


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = Path(path).read_bytes()
    assert data.startswith(PNG_MAGIC)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_boundary_is_drawn_for_two_features_and_a_note_for_three(chain, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    argv = plot_model_argv("linear", chain, chain.params)
    argv[argv.index("--boundary-png") + 1] = str(tmp_path / "b.png")
    plot_model.main(argv)
    assert not any("skipped" in r.getMessage() for r in caplog.records)
    assert png_size(tmp_path / "b.png") == (1200, 500)  # two 12x5 in panels at 100 dpi
    assert png_size(chain.figures / "linear_boundary.png") == (1200, 500)


# --- error contract ---------------------------------------------------------------------------

def expect_error(capsys, stage: str, argv: list[str], *fragments: str) -> str:
    """main(argv) exits 2 with one stderr line ``<stage>: error: ...`` naming the culprit."""
    capsys.readouterr()
    stage_name = stage.split()[0]
    with pytest.raises(SystemExit) as exc:
        MAINS[stage_name](argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{stage}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server (127.0.0.1, free port) serving a good CSV; 500 under /error500."""
    yield from local_http.serve_good_csv(tmp_path_factory)


def _body(extra: str) -> str:
    return good_csv_text() + extra


# case id -> (file content or None, params changes, message fragments); "{src}" is replaced by
# the source written, "{url}" by the server's address.
FETCH_CASES = {
    "missing_file": (None, {}, ["{src}", "file not found", "fetch.source"]),
    "empty_file": ("", {}, ["{src}", "empty file"]),
    "header_only": ("X1,X2,color\n", {}, ["{src}", "has a header but no data rows"]),
    "no_header": ("".join(f"{i}.5,{i}.25,c{i % 2}\n" for i in range(10)), {},
                  ["{src}", "column 'X1' not found", "header row"]),
    "missing_feature": ("X1,X3,color\n" + good_csv_text().split("\n", 1)[1], {},
                        ["{src}", "column 'X2' not found", "X1, X3, color"]),
    "missing_target": ("X1,X2,colour\n" + good_csv_text().split("\n", 1)[1], {},
                       ["{src}", "column 'color' not found"]),
    "non_numeric": (_body("abc,0.5,c1\n"), {}, ["{src}", "column 'X1' row 26", "'abc'"]),
    "nan": (_body("0.5,nan,c1\n"), {}, ["{src}", "column 'X2' row 26", "nan", "finite"]),
    "empty_value": (_body(",0.5,c1\n"), {}, ["{src}", "column 'X1' row 26"]),
    "inf": (_body("inf,0.5,c1\n"), {}, ["{src}", "column 'X1' row 26", "inf", "finite"]),
    "missing_label": (_body("0.5,0.5,\n"), {}, ["{src}", "column 'color' row 26", "no label"]),
    "single_class": ("X1,X2,color\n" + "".join(f"{i},{i},c1\n" for i in range(10)), {},
                     ["{src}", "column 'color' has 1 class", "c1"]),
    "too_few_rows": (good_csv_text() + "1,1,c9\n2,2,c9\n", {},
                     ["{src}", "class 'c9' has 2 row(s)"]),
    "duplicate_columns": ("X1,X1,color\n" + good_csv_text().split("\n", 1)[1], {},
                          ["{src}", "duplicate column name 'X1'"]),
    "features_name_target": (good_csv_text(), {"data.features": ["X1", "color"]},
                             ["{src}", "data.target 'color'", "data.features"]),
    "binary_garbage": (np.random.RandomState(0).bytes(300_000), {}, ["{src}", "not a"]),
    "sha256_mismatch": (good_csv_text(), {"fetch.sha256": "0" * 64},
                        ["{src}", "sha256", "0" * 64, "fetch.sha256",
                         hashlib.sha256(good_csv_text().encode()).hexdigest()]),
    "http_404": ("{url}/missing.csv", {}, ["{src}", "HTTP 404"]),
    "http_500": ("{url}/error500/good.csv", {}, ["{src}", "HTTP 500"]),
    "unreachable": ("http://127.0.0.1:{closed}/good.csv", {"fetch.timeout": 5},
                    ["{src}", "cannot fetch"]),
    "unknown_param": (good_csv_text(), {"fetch.url": "x"}, ["unknown key fetch.url"]),
    "bad_sha256_param": (good_csv_text(), {"fetch.sha256": "abc"}, ["fetch.sha256='abc'"]),
}


def fetch_case(name: str, tmp_path: Path, url: str) -> tuple[str, str, list[str]]:
    """(params path, source, fragments) for one FETCH_CASES entry."""
    content, changes, fragments = FETCH_CASES[name]
    if isinstance(content, str) and content.startswith(("{url}", "http://")):
        source = content.format(url=url, closed=local_http.closed_port())
    else:
        source = str(tmp_path / f"{name}.csv")
        if isinstance(content, str):
            Path(source).write_text(content)
        elif isinstance(content, bytes):
            Path(source).write_bytes(content)
    p = with_changes(tiny_params(), {"fetch.source": source, **changes})
    params = write_params(tmp_path / "params.yaml", p)
    return params, source, [f.replace("{src}", source) for f in fragments]


@pytest.mark.parametrize("case", FETCH_CASES)
def test_fetch_error_is_one_line_and_writes_nothing(chain, server, tmp_path, capsys, case):
    params, source, fragments = fetch_case(case, tmp_path, server)
    fresh = tmp_path / "fresh"
    expect_error(capsys, "fetch", fetch_argv(chain, params, str(fresh / "raw.csv")), *fragments)
    assert not fresh.exists() or list(fresh.iterdir()) == []
    # a good file from an earlier run stays exactly as it was, with no temp files beside it
    previous = tmp_path / "previous"
    previous.mkdir()
    shutil.copy(chain.raw, previous / "raw.csv")
    expect_error(capsys, "fetch", fetch_argv(chain, params, str(previous / "raw.csv")),
                 *fragments)
    assert snapshot(previous) == {"raw.csv": Path(chain.raw).read_bytes()}


@pytest.mark.parametrize("case, shown", [("nan", "has value nan;"), ("inf", "has value inf;"),
                                         ("non_numeric", "has value 'abc';")])
def test_fetch_bad_value_message_shows_the_plain_value(chain, tmp_path, capsys, case, shown):
    params, source, _ = fetch_case(case, tmp_path, "")
    line = expect_error(capsys, "fetch", fetch_argv(chain, params, str(tmp_path / "o.csv")))
    assert shown in line and "np.float64" not in line


def test_fetch_from_url_with_matching_sha256(server, tmp_path):
    text = good_csv_text()
    p = with_changes(tiny_params(), {"fetch.source": f"{server}/good.csv",
                                     "fetch.sha256": hashlib.sha256(text.encode()).hexdigest()})
    out = tmp_path / "raw.csv"
    fetch.main(["--params", write_params(tmp_path / "params.yaml", p), "--out", str(out)])
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["X1", "X2", "color"] and len(frame) == 24


# (stage, params changes, fragments, xfail reason or None)
PARAM_CASES = [
    ("train_linear", {"train_linear.foo": 1}, ["unknown key train_linear.foo"], None),
    ("train_linear", {"train_linear.epochs": "ten"},
     ["train_linear.epochs='ten'", "integer"], None),
    ("train_linear", {"train_linear.lr": -0.01}, ["train_linear.lr=-0.01", "> 0"], None),
    ("train_linear", {"train_linear.hidden_dims": [0]}, ["train_linear.hidden_dims=[0]"], None),
    ("train_linear", {"seed": "abc"}, ["seed='abc'", "integer"], None),
    ("train_numpy_mlp", {"train_numpy_mlp.epochs": 0}, ["train_numpy_mlp.epochs=0", "> 0"],
     None),
    ("train_numpy_mlp", {"train_numpy_mlp.hidden_dims": [8, 0]},
     ["train_numpy_mlp.hidden_dims=[8, 0]"], None),
    ("train_numpy_mlp", {"train_numpy_mlp.lr": -1.0}, ["train_numpy_mlp.lr=-1.0"], None),
    ("train_numpy_mlp", {"train_numpy_mlp.init_scale": "small"},
     ["train_numpy_mlp.init_scale='small'", "number"], None),
    ("train_numpy_mlp", {"train_numpy_mlp.batch_size": 0},
     ["train_numpy_mlp.batch_size=0"], None),
    ("train_torch_mlp", {"train_torch_mlp.dropout_p": 1.0},
     ["train_torch_mlp.dropout_p=1.0", "[0, 1)"], None),
    ("train_torch_mlp", {"train_torch_mlp.epochs": 0}, ["train_torch_mlp.epochs=0"], None),
    ("train_torch_mlp", {"train_torch_mlp.hidden_dims": []},
     ["train_torch_mlp.hidden_dims=[]"], None),
    ("train_torch_mlp", {"train_torch_mlp.lr": -0.5}, ["train_torch_mlp.lr=-0.5"], None),
    ("train_torch_mlp", {"train_torch_mlp.init": "he"},
     ["train_torch_mlp.init='he'", "default, xavier_normal"], None),
    ("train_torch_mlp", {"train_torch_mlp.hidden_dims": [2.5]},
     ["train_torch_mlp.hidden_dims=[2.5]", "integer"], None),
    ("train_torch_mlp", {"train_torch_mlp.init_scale": 0.1},
     ["unknown key train_torch_mlp.init_scale"], None),
    ("overfit_random", {"overfit_random.dropout_p": 1.0}, ["overfit_random.dropout_p=1.0"],
     None),
    ("overfit_random", {"overfit_random.epochs": 0}, ["overfit_random.epochs=0"], None),
    ("overfit_random", {"overfit_random.lr": -0.1}, ["overfit_random.lr=-0.1"], None),
    ("overfit_random", {"overfit_random.typo": 3}, ["unknown key overfit_random.typo"], None),
    ("overfit_random", {"split.val_size": 0.2}, ["split.", "=1.05", "sum to 1"], None),
    ("overfit_random", {"overfit_random.hidden_dims": 0}, ["overfit_random.hidden_dims=0"],
     None),
    ("overfit_random", {"overfit_random.hidden_dims": [-5]},
     ["overfit_random.hidden_dims=[-5]"], None),
    ("overfit_random", {"overfit_random.samples_per_class": 2},
     ["overfit_random data", "class '0' has 2 row(s)"], None),
]
# every params error names the params file it read ("{params}"), except the last case, whose
# sizes are valid params but too small for the split
PARAM_CASES = [(stage, changes, ["{params}"] * (i < len(PARAM_CASES) - 1) + fragments, xfail)
               for i, (stage, changes, fragments, xfail) in enumerate(PARAM_CASES)]


def _param_case_id(case):
    stage, changes, _, _ = case
    (key, value), = changes.items()
    return f"{stage}-{key}={value}"


@pytest.mark.parametrize("case", [
    pytest.param(c, id=_param_case_id(c),
                 marks=[pytest.mark.xfail(strict=True, reason=c[3]),
                        pytest.mark.filterwarnings("ignore:Initializing zero-element")]
                 if c[3] else [])
    for c in PARAM_CASES])
def test_training_params_error_writes_nothing(chain, tmp_path, capsys, case):
    stage, changes, fragments, _ = case
    name = {v: k for k, v in TRAIN_STAGE.items()}[stage]
    params = write_params(tmp_path / "params.yaml", with_changes(tiny_params(), changes))
    fresh = tmp_path / "fresh"
    argv = train_argv(name, chain, params, str(fresh / "model"), str(fresh / "curves.csv"),
                      [str(fresh / f"{s}.npz") for s in SPLITS])
    fragments = [f.replace("{params}", params) for f in fragments]
    expect_error(capsys, stage, argv, *fragments)
    assert not fresh.exists() or snapshot(fresh) == {}
    previous = tmp_path / "previous"
    shutil.copytree(chain.model_dir(name), previous / "model")
    shutil.copy(chain.curves(name), previous / "curves.csv")
    for s in SPLITS:
        shutil.copy(chain.data_for(name)[s], previous / f"{s}.npz")
    before = snapshot(previous)
    argv = train_argv(name, chain, params, str(previous / "model"),
                      str(previous / "curves.csv"), [str(previous / f"{s}.npz") for s in SPLITS])
    expect_error(capsys, stage, argv, *fragments)
    assert snapshot(previous) == before


@pytest.mark.parametrize("changes, fragments", [
    ({"split.train_size": 0.8},
     ["{params}", "split.train_size + val_size + test_size=1.1", "sum to 1"]),
    ({"split.test_size": 0}, ["{params}", "split.test_size=0", "(0, 1)"]),
    ({"split.extra": 1}, ["{params}", "unknown key split.extra"]),
    ({"seed": -1}, ["seed=-1", "[0, 2**32)"]),
    ({"data.target": ""}, ["{params}", "data.target=''"]),
], ids=["sum", "zero", "unknown", "seed", "target"])
def test_split_params_error_writes_nothing(chain, tmp_path, capsys, changes, fragments):
    params = write_params(tmp_path / "params.yaml", with_changes(tiny_params(), changes))
    L = Layout(tmp_path)
    L.raw = chain.raw
    expect_error(capsys, "split", split_argv(L, params),
                 *[f.replace("{params}", params) for f in fragments])
    assert not (tmp_path / "data").exists()


def test_seed_error_names_the_params_file_given(chain, tmp_path, capsys):
    params = write_params(tmp_path / "custom.yaml",
                          with_changes(tiny_params(), {"seed": "abc"}))
    L = Layout(tmp_path)
    L.raw = chain.raw
    expect_error(capsys, "split", split_argv(L, params), f"{params}: seed='abc'")


def test_split_refuses_a_class_too_small_for_the_split(tmp_path, capsys):
    raw = tmp_path / "raw.csv"
    raw.write_text(good_csv_text(rows_per_class=8) + "".join(f"{i},{i},c4\n" for i in range(5)))
    L = Layout(tmp_path)
    L.raw = str(raw)
    params = write_params(tmp_path / "params.yaml", tiny_params())
    expect_error(capsys, "split", split_argv(L, params), str(raw), "class 'c4' has 5 row(s)",
                 "at least 7")
    assert not (tmp_path / "data").exists()


def test_stage_input_file_errors(chain, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", tiny_params())
    L = Layout(tmp_path / "out")
    expect_error(capsys, "split", split_argv(L, params), L.raw, "file not found")
    expect_error(capsys, "scale_encode", scale_encode_argv(L, params), L.split["train"],
                 "file not found")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    argv = train_argv("torch_mlp", chain, params, L.model_dir("torch_mlp"), L.curves("x"))
    argv[argv.index("--preprocess") + 1] = str(bad)
    expect_error(capsys, "train_torch_mlp", argv, str(bad), "not valid JSON")
    argv = evaluate_argv(chain)
    argv[argv.index("--models-dir") + 1] = str(tmp_path / "no_models")
    argv[argv.index("--headline"):] = evaluate_argv(L, ())[-12:]
    expect_error(capsys, "evaluate", argv, str(tmp_path / "no_models" / "linear"),
                 "model directory not found")
    assert not L.root.exists()


def plot_model_bad_confusion_argv(chain, tmp_path):
    confusion = tmp_path / "confusion.json"
    confusion.write_text("[1, 2")
    argv = plot_model_argv("numpy_mlp", chain, chain.params)
    argv[argv.index("--confusion") + 1] = str(confusion)
    for flag in ("--boundary-png", "--curves-png", "--confusion-png"):
        argv[argv.index(flag) + 1] = str(tmp_path / "figures" / f"{flag[2:]}")
    return argv, confusion


def test_plot_model_error_is_one_line(chain, tmp_path, capsys):
    argv, confusion = plot_model_bad_confusion_argv(chain, tmp_path)
    expect_error(capsys, "plot_model numpy_mlp", argv, str(confusion), "not valid JSON")


def test_plot_model_error_writes_nothing(chain, tmp_path, capsys):
    argv, _ = plot_model_bad_confusion_argv(chain, tmp_path)
    expect_error(capsys, "plot_model numpy_mlp", argv)
    assert not (tmp_path / "figures").exists()


def test_plot_model_with_a_confusion_file_lacking_the_test_matrix(chain, tmp_path, capsys):
    confusion = tmp_path / "confusion.json"
    confusion.write_text(json.dumps({"train": {}}))
    argv = plot_model_argv("linear", chain, chain.params)
    argv[argv.index("--confusion") + 1] = str(confusion)
    for flag in ("--boundary-png", "--curves-png", "--confusion-png"):
        argv[argv.index(flag) + 1] = str(tmp_path / "figures" / f"{flag[2:]}")
    expect_error(capsys, "plot_model linear", argv, str(confusion), "linear")


@pytest.mark.parametrize("X, y", [(np.zeros((6, 3)), np.arange(6) % 3),
                                  (np.zeros((6, 2)), np.full(6, 9))],
                         ids=["three_features_for_a_two_feature_model", "label_out_of_range"])
def test_evaluate_refuses_a_split_that_does_not_fit_the_model(chain, tmp_path, capsys, X, y):
    from nnpipe.core import files

    bad = tmp_path / "bad"
    for split_name in SPLITS:
        files.write_npz(str(bad / f"{split_name}.npz"), {"X": X, "y": y.astype(np.int64)})
    L = Layout(tmp_path / "out")
    argv = ["--models-dir", str(chain.root / "models"), "--linear", str(bad),
            *evaluate_argv(L, ())[2:]]
    expect_error(capsys, "evaluate", argv, str(bad / "train.npz"))
    assert not L.root.exists()


def test_plot_params_error(chain, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml",
                          with_changes(tiny_params(), {"plot.grid_size": 0}))
    L = Layout(tmp_path)
    L.raw = chain.raw
    expect_error(capsys, "plot_data", plot_data_argv(L, params), "plot.grid_size=0")
    assert not L.figures.exists()


def test_debug_env_lets_the_pipeline_error_propagate(chain, tmp_path, monkeypatch):
    params = write_params(tmp_path / "params.yaml",
                          with_changes(tiny_params(), {"fetch.source": str(tmp_path / "no.csv")}))
    monkeypatch.setenv("NNPIPE_DEBUG", "1")
    with pytest.raises(PipelineError, match="no.csv: file not found"):
        fetch.main(fetch_argv(chain, params, str(tmp_path / "raw.csv")))
    assert not (tmp_path / "raw.csv").exists()


@pytest.mark.parametrize("launch", [["-m", "stages.fetch"], ["-m", "stages", "fetch"]],
                         ids=["module", "launcher"])
def test_debug_env_in_a_real_process(tmp_path, launch):
    """The same contract seen from outside: exit 2 and one line; a traceback with NNPIPE_DEBUG=1.

    Both as ``python -m stages.fetch`` and through dvc.yaml's launcher (warmstart.launcher).
    """
    params = write_params(tmp_path / "params.yaml",
                          with_changes(tiny_params(), {"fetch.source": str(tmp_path / "no.csv")}))
    argv = [sys.executable, *launch, "--params", params, "--out", str(tmp_path / "raw.csv")]
    env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
    quiet = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr == f"fetch: error: {tmp_path / 'no.csv'}: file not found (fetch.source)\n"
    assert quiet.stdout == ""
    loud = subprocess.run(argv, cwd=ROOT, env={**env, "NNPIPE_DEBUG": "1"},
                          capture_output=True, text=True)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "PipelineError" in loud.stderr
    assert not (tmp_path / "raw.csv").exists()


@pytest.mark.parametrize("pairs, fragment", [
    ([], "expected --NAME VALUE pairs, one per model"),
    (["--linear"], "expected --NAME VALUE, got --linear"),
    (["linear", "data/processed"], "expected --NAME VALUE, got linear"),
    (["--lin/ear", "data/processed"], "expected --NAME VALUE"),
    (["--linear", "a", "--linear", "b"], "--linear given twice"),
], ids=["none", "no_value", "no_dashes", "not_an_identifier", "twice"])
def test_evaluate_refuses_a_malformed_model_registry(chain, tmp_path, capsys, pairs, fragment):
    """dvc.yaml passes its ${models} registry as --NAME DATA_DIR pairs: anything else is a
    usage error (exit 2, argparse's one line), before anything is read or written."""
    L = Layout(tmp_path / "out")
    argv = ["--models-dir", str(chain.root / "models"), *pairs, *evaluate_argv(L, ())[2:]]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        evaluate.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
    assert not L.root.exists()


def test_evaluate_follows_the_registry_it_is_given(chain, tmp_path):
    """Two models under other names: the metrics hold exactly those."""
    L = Layout(tmp_path)
    models_dir = tmp_path / "models"
    for name, source in (("wide_mlp", "torch_mlp"), ("base", "linear")):
        shutil.copytree(chain.model_dir(source), models_dir / name)
    argv = ["--models-dir", str(models_dir), "--wide_mlp", str(chain.root / "data/processed"),
            "--base", str(chain.root / "data/processed"), *evaluate_argv(L, ())[2:]]
    evaluate.main(argv)
    metrics = json.loads(Path(L.metrics).read_text())
    assert sorted(metrics) == ["base", "wide_mlp"]
    original = json.loads(Path(chain.metrics).read_text())
    assert metrics["wide_mlp"] == original["torch_mlp"]
    assert sorted(p.name for p in Path(L.predictions).iterdir()) == ["base.csv", "wide_mlp.csv"]
