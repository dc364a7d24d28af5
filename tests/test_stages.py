"""Every stage's main(argv), run in a temp dir exactly as dvc.yaml wires them (tests/pipeline.py).

A session-scoped tiny run of the whole pipeline feeds checks of each output's contents, for
every model of the registry; the stages' byte-for-byte reruns, a user CSV with three features,
and the one-line error contract (exit 2, ``<stage>: error: ...`` on stderr, no traceback,
nothing written, nothing previously written lost).
"""
from __future__ import annotations

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

import local_http
import penguins
from local_http import good_csv_text
from nnpipe.models import CURVES
from pipeline import (MODELS, REGISTRY, ROOT, SPLITS, STAGES, Run, model_sections, tiny_params,
                      tree_bytes, with_changes, write_params)

PNG_MAGIC = b"\x89PNG"
TINY = tiny_params()
TRAIN = {m: STAGES[f"train@{m}"] for m in MODELS}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Run:
    """The whole pipeline once, on tiny params."""
    return Run(tmp_path_factory.mktemp("tiny"), TINY).run()


def npz_arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def section(model: str) -> dict:
    return TINY[f"train_{model}"]


def classes_of(run: Run, model: str) -> list[str]:
    return json.loads((run.data_dir(model) / "preprocess.json").read_text())["classes"]


# --- data stages ------------------------------------------------------------------------------

def test_spiral_and_fetch_write_the_spiral_csv(tiny):
    frame = pd.read_parquet(tiny / "data/table.parquet")
    spiral = TINY["spiral"]
    assert list(frame.columns) == ["X1", "X2", "color"]
    assert len(frame) == spiral["samples_per_class"] * len(spiral["classes"])
    assert frame["color"].value_counts().to_dict() == \
        {c: spiral["samples_per_class"] for c in spiral["classes"]}
    assert frame[["X1", "X2"]].dtypes.tolist() == [np.float64, np.float64]
    assert np.all(np.hypot(frame["X1"], frame["X2"]) <= 1.0 + 1e-12)  # the unit disc
    spiral_csv = pd.read_csv(tiny / "data/spiral.csv")
    pd.testing.assert_frame_equal(frame.astype({"color": str}), spiral_csv.astype({"color": str}),
                                  check_dtype=False)
    typed = json.loads((tiny / "data/schema.json").read_text())
    assert [(c["name"], c["type"]) for c in typed["features"]] == [("X1", "numeric"),
                                                                    ("X2", "numeric")]
    assert typed["target"]["classes"] == sorted(spiral["classes"])


def test_split_sizes_are_stratified_and_partition_the_rows(tiny):
    raw = pd.read_parquet(tiny / "data/table.parquet")
    parts = {s: pd.read_parquet(tiny / f"data/split/{s}.parquet") for s in SPLITS}
    # train_test_split floors 0.7 * 180 (= 125.99999999999999) to 125
    assert {s: len(f) for s, f in parts.items()} == {"train": 125, "val": 27, "test": 28}
    for frame in parts.values():
        counts = frame["color"].value_counts()
        assert sorted(counts.index) == sorted(TINY["spiral"]["classes"])
        assert counts.max() - counts.min() <= 1  # stratified
        assert list(frame.columns) == ["X1", "X2", "color"]
    rows = lambda f: sorted(map(tuple, f.to_numpy().tolist()))  # noqa: E731
    assert rows(pd.concat(parts.values())) == rows(raw)


def test_scale_encode_writes_npz_and_state(tiny):
    state = json.loads((tiny / "data/processed/preprocess.json").read_text())
    assert set(state) == {"inputs", "missing", "imputer", "scaler", "encoder", "features",
                          "classes", "class_counts", "rows"}
    assert set(state["scaler"]) == {"mean", "scale", "var", "n_samples_seen"}
    assert state["features"] == state["inputs"] == ["X1", "X2"]
    assert state["encoder"] == {"categories": {}, "handle_unknown": TINY["data"]["handle_unknown"]}
    assert state["missing"] == TINY["data"]["missing"] == "error" and state["imputer"] == {}
    classes = sorted(TINY["spiral"]["classes"])
    assert state["classes"] == classes
    train_labels = pd.read_parquet(tiny / f"data/split/train.parquet")["color"]
    counts = [int((train_labels == c).sum()) for c in classes]
    assert state["class_counts"] == counts
    assert state["scaler"]["n_samples_seen"] == len(train_labels)
    assert state["rows"] == len(pd.read_parquet(tiny / "data/table.parquet"))
    for s in SPLITS:
        labels = pd.read_parquet(tiny / f"data/split/{s}.parquet")["color"]
        arrays = npz_arrays(tiny / f"data/processed/{s}.npz")
        assert set(arrays) == {"X", "y"}
        assert arrays["X"].shape == (len(labels), 2) and arrays["X"].dtype == np.float64
        assert arrays["y"].shape == (len(labels),) and arrays["y"].dtype == np.int64
        assert [classes[i] for i in arrays["y"]] == labels.tolist()
    X_train = npz_arrays(tiny / "data/processed/train.npz")["X"]
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=1e-12)
    raw_train = pd.read_parquet(tiny / f"data/split/train.parquet")[["X1", "X2"]].to_numpy()
    np.testing.assert_allclose(state["scaler"]["mean"], raw_train.mean(axis=0))


def test_random_data_writes_its_own_splits_and_state(tiny):
    random = TINY["random_data"]
    rows = random["samples_per_class"] * random["num_classes"]
    directory = next(tiny / d for m, d in REGISTRY.items() if d != "data/processed")
    sizes = []
    for s in SPLITS:
        arrays = npz_arrays(directory / f"{s}.npz")
        assert set(arrays) == {"X", "y"}
        assert arrays["X"].shape[1] == random["num_features"] and arrays["y"].dtype == np.int64
        assert set(arrays["y"].tolist()) == set(range(random["num_classes"]))
        sizes.append(len(arrays["y"]))
    assert sum(sizes) == rows and sizes[0] == int(0.7 * rows)
    state = json.loads((directory / "preprocess.json").read_text())
    assert state["rows"] == rows
    assert state["classes"] == [str(k) for k in range(random["num_classes"])]


# --- training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_model_dir_holds_config_and_weights(tiny, model):
    directory = tiny.model_dir(model)
    assert {p.name for p in directory.iterdir()} == {"config.json", "weights.npz"}
    config = json.loads((directory / "config.json").read_text())
    assert set(config) == {"model", "preprocess"}
    spec, hp = config["model"], section(model)
    state = json.loads((tiny.data_dir(model) / "preprocess.json").read_text())
    assert config["preprocess"] == state
    d, c = len(state["features"]), len(state["classes"])
    hidden = [2 * state["rows"] + d] if hp["hidden_dims"] == "auto" else hp["hidden_dims"]
    assert spec == {"name": model, "backend": hp["backend"], "activation": hp["activation"],
                    "input_dim": d, "hidden_dims": hidden, "num_classes": c}
    dims = [d, *hidden, c]
    weights = npz_arrays(directory / "weights.npz")
    expected = {}
    for i in range(1, len(dims)):
        expected[f"W{i}"], expected[f"b{i}"] = (dims[i - 1], dims[i]), (dims[i],)
    assert {k: v.shape for k, v in weights.items()} == expected
    assert all(v.dtype == np.float64 and np.isfinite(v).all() for v in weights.values())


def curves(path, model: str) -> pd.DataFrame:
    """DVCLive's files of one model: a frame per logged epoch of every figure (step = epoch)."""
    tables = [pd.read_csv(path / f"reports/curves/{model}/plots/metrics/{name}.tsv", sep="\t")
              for name in CURVES]
    assert all(t["step"].tolist() == tables[0]["step"].tolist() for t in tables)
    return pd.concat([tables[0]] + [t.drop(columns="step") for t in tables[1:]], axis=1)


@pytest.mark.parametrize("model", MODELS)
def test_curves_are_dvclive_files_every_log_every_epochs(tiny, model):
    directory = tiny / f"reports/curves/{model}"
    assert sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file()) == ["metrics.json", *sorted(f"plots/metrics/{n}.tsv"
                                                              for n in CURVES)]
    frame, summary = curves(tiny, model), json.loads((directory / "metrics.json").read_text())
    every, kept, last = section(model)["log_every"], summary["kept"]["epoch"], summary["step"]
    assert 0 < last < section(model)["epochs"]  # all epochs, or fewer if patience stopped it
    assert frame["step"].tolist() == sorted({*range(0, last + 1, every), kept, last})
    assert "timestamp" not in frame and set(summary) == {*CURVES, "step", "kept"}
    assert frame.set_index("step").loc[kept].to_dict() == {
        n: summary["kept"][n] for n in CURVES}  # the kept epoch's figures, exactly
    for column in ("train_acc", "val_acc"):
        assert frame[column].between(0, 1).all()
    assert (frame[["train_loss", "val_loss"]] > 0).all().all()


@pytest.mark.parametrize("model", [m for m in MODELS if section(m)["backend"] == "numpy"])
def test_the_numpy_mlp_learns_the_spiral_a_little(tiny, model):
    frame = curves(tiny, model)
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]


# --- evaluate ---------------------------------------------------------------------------------

def test_metrics_json_is_model_split_figure(tiny):
    metrics = json.loads((tiny / "reports/metrics.json").read_text())
    assert set(metrics) == set(MODELS)
    for model in MODELS:
        assert set(metrics[model]) == set(SPLITS)
        for split, figures in metrics[model].items():
            interval = {"accuracy_low", "accuracy_high"} if split == "test" else set()
            assert set(figures) == {"accuracy", "precision", "recall", "f1"} | interval
            assert all(isinstance(v, float) and 0 <= v <= 1 for v in figures.values())


def test_headline_is_each_models_test_accuracy(tiny):
    """The first columns of `dvc exp show`: model -> {"test_acc"}, the same number as metrics."""
    headline = json.loads((tiny / "reports/headline.json").read_text())
    metrics = json.loads((tiny / "reports/metrics.json").read_text())
    assert headline == {m: {"test_acc": metrics[m]["test"]["accuracy"]} for m in MODELS}
    for m in MODELS:
        test = metrics[m]["test"]
        assert test["accuracy_low"] <= test["accuracy"] <= test["accuracy_high"]


def test_predictions_match_metrics_and_test_labels(tiny):
    metrics = json.loads((tiny / "reports/metrics.json").read_text())
    for model in MODELS:
        frame = pd.read_csv(tiny / f"reports/predictions/{model}.csv", dtype=str)
        assert list(frame.columns) == ["actual", "predicted"]
        y_test = npz_arrays(tiny.data_dir(model) / "test.npz")["y"]
        classes = classes_of(tiny, model)
        assert frame["actual"].tolist() == [classes[i] for i in y_test]
        assert set(frame["predicted"]) <= set(classes)
        accuracy = float((frame["actual"] == frame["predicted"]).mean())
        assert metrics[model]["test"]["accuracy"] == pytest.approx(accuracy)


def test_per_class_and_confusion(tiny):
    per_class = json.loads((tiny / "reports/per_class.json").read_text())
    confusion = {p.stem: json.loads(p.read_text()) for p in (tiny / "reports/confusion").glob("*")}
    assert set(per_class) == set(MODELS) == set(confusion)
    for model in MODELS:
        test, classes = per_class[model]["test"], classes_of(tiny, model)
        assert list(test) == classes
        for figures in test.values():
            assert set(figures) == {"precision", "recall", "f1", "support"}
        matrix = np.array(confusion[model]["test"]["matrix"])
        assert confusion[model]["test"]["classes"] == classes
        assert matrix.shape == (len(classes), len(classes))
        assert matrix.sum(axis=1).tolist() == [test[c]["support"] for c in classes]
        assert matrix.sum() == len(npz_arrays(tiny.data_dir(model) / "test.npz")["y"])


def test_summary_md_has_one_row_per_model(tiny):
    metrics = json.loads((tiny / "reports/metrics.json").read_text())
    lines = (tiny / "reports/summary.md").read_text().splitlines()
    assert lines[0] == "## Model comparison (test split)"
    assert "| model | accuracy | 95% interval | precision | recall | f1 |" in lines
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split("|")[1].strip() for row in rows] == list(MODELS)
    for row, model in zip(rows, MODELS):
        test = metrics[model]["test"]
        assert row.split("|")[2].strip() == f"{test['accuracy']:.4f}"
        assert row.split("|")[3].strip() == \
            f"[{test['accuracy_low']:.4f}, {test['accuracy_high']:.4f}]"


# --- plots ------------------------------------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = Path(path).read_bytes()
    assert data.startswith(PNG_MAGIC)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_every_figure_is_a_png(tiny):
    names = ["data.png", "activations.png"] + [f"{m}_{kind}.png" for m in MODELS
                                               for kind in ("boundary", "curves", "confusion")]
    figures = tiny / "reports/figures"
    assert sorted(p.name for p in figures.iterdir()) == sorted(names)
    for name in names:
        data = (figures / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    for model in MODELS:  # two features: train | test over the decision regions
        assert png_size(figures / f"{model}_boundary.png") == (1200, 500)


# --- determinism ------------------------------------------------------------------------------

def test_a_second_run_is_byte_identical(tiny, tmp_path):
    again = Run(tmp_path, TINY).run()
    for top in ("data", "models", "reports"):
        assert tree_bytes(again / top) == tree_bytes(tiny / top), top


@pytest.mark.parametrize("model", MODELS)
def test_mini_batches_are_used_and_deterministic(tiny, tmp_path, model):
    runs = []
    for name in ("a", "b"):
        run = Run(tmp_path / name, with_changes(TINY, {f"train_{model}.batch_size": 8}))
        for dep in TRAIN[model].deps:
            shutil.copytree(tiny / dep, run / dep) if (tiny / dep).is_dir() else \
                (run / dep).parent.mkdir(parents=True, exist_ok=True) or shutil.copy(tiny / dep,
                                                                                    run / dep)
        run.run([f"train@{model}"])
        runs.append({**tree_bytes(run.model_dir(model)),
                     **tree_bytes(run / f"reports/curves/{model}")})
    assert runs[0] == runs[1]
    full_batch = tree_bytes(tiny.model_dir(model))  # mini-batches really change training
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


def test_user_csv_with_three_features_runs_every_model(tmp_path, caplog):
    source = tmp_path / "mine.csv"
    three_feature_csv(source)
    run = Run(tmp_path / "run", with_changes(TINY, {
        "fetch.source": str(source), "data.features": ["a", "b", "c"], "data.target": "label"}))
    caplog.set_level(logging.INFO)
    run.run()
    raw = pd.read_parquet(run / "data/table.parquet")
    assert list(raw.columns) == ["a", "b", "c", "label"]  # the extra "id" column is dropped
    assert len(raw) == 60
    spiral_models = [m for m in MODELS if REGISTRY[m] == "data/processed"]
    metrics = json.loads((run / "reports/metrics.json").read_text())
    for model in spiral_models:
        config = json.loads((run.model_dir(model) / "config.json").read_text())
        assert config["model"]["input_dim"] == 3
        assert config["preprocess"]["classes"] == ["hi", "lo", "mid"]
        boundary = run / f"reports/figures/{model}_boundary.png"
        assert png_size(boundary) == (1200, 500)  # per-class ROC | precision-recall
        skipped = [m for m in caplog.messages if m.startswith("decision boundary not drawn")
                   and f", {model} has" in m]
        assert skipped == [f"decision boundary not drawn: it needs exactly 2 numeric features "
                           f"and no categorical one, {model} has 3 numeric and 0 categorical: "
                           "drew per-class ROC and precision-recall on test instead"]
    numpy_models = [m for m in spiral_models if section(m)["backend"] == "numpy"]
    assert all(metrics[m]["test"]["accuracy"] > 0.5 for m in numpy_models)  # separated blobs


# --- a user CSV with text columns and missing cells --------------------------------------------

OWN = {"data.features": [*penguins.FEATURES, "year"], "data.target": penguins.TARGET,
       "data.categorical": ["year"], "data.missing": "median", "data.handle_unknown": "ignore"}


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Run:
    """The whole pipeline on the penguin-like table: numbers, text, a year declared
    categorical, NA and empty cells imputed (median; most frequent for categories)."""
    root = tmp_path_factory.mktemp("own")
    source = penguins.write(root / "penguins.csv")
    return Run(root / "run", with_changes(TINY, {"fetch.source": str(source), **OWN})).run()


def test_own_fetch_keeps_text_numbers_and_gaps(own):
    raw = pd.read_parquet(own / "data/table.parquet")
    table = penguins.frame()
    assert list(raw.columns) == [*OWN["data.features"], "species"] and len(raw) == len(table)
    assert raw["island"].tolist() == table["island"].tolist()
    assert set(raw["year"]) == {"2007", "2008", "2009"}  # text, as declared
    for (row, column) in penguins.GAPS:
        assert pd.isna(raw.loc[row, column]), (row, column)
    assert raw[penguins.MEASUREMENTS].dtypes.tolist() == [np.float64] * 4


def test_own_state_is_fit_on_train_and_encodes_every_category(own):
    state = json.loads((own / "data/processed/preprocess.json").read_text())
    train = pd.read_parquet(own / f"data/split/train.parquet")
    assert state["inputs"] == OWN["data.features"] and state["missing"] == "median"
    assert state["encoder"] == {"handle_unknown": "ignore", "categories": {
        "island": ["Biscoe", "Dream", "Torgersen"], "sex": ["female", "male"],
        "year": ["2007", "2008", "2009"]}}
    assert state["imputer"] == {**{m: train[m].median() for m in penguins.MEASUREMENTS},
                                **{c: train[c].mode()[0] for c in ("island", "sex", "year")}}
    assert state["features"][:5] == [*penguins.MEASUREMENTS, "island_Biscoe"]
    assert len(state["features"]) == 4 + 3 + 2 + 3
    X = npz_arrays(own / "data/processed/train.npz")["X"]
    assert X.shape == (len(train), 12) and np.isfinite(X).all()
    np.testing.assert_allclose(X[:, :4].mean(axis=0), 0.0, atol=1e-12)  # imputed, then scaled
    one_hot = X[:, 4:]
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    assert (one_hot[:, :3].sum(axis=1) == 1).all() and (one_hot[:, 3:5].sum(axis=1) == 1).all()


@pytest.mark.parametrize("model", MODELS)
def test_own_models_take_the_encoded_width(own, model, caplog):
    config = json.loads((own.model_dir(model) / "config.json").read_text())
    width = 12 if REGISTRY[model] == "data/processed" else TINY["random_data"]["num_features"]
    assert config["model"]["input_dim"] == width
    boundary = png_size(own / f"reports/figures/{model}_boundary.png")
    assert boundary == (1200, 500)  # per-class ROC | precision-recall, or the boundary
    assert png_size(own / "reports/figures/data.png") == (600, 500)  # bill length x depth


def test_own_boundary_and_data_figures_say_why_they_are_not_drawn(own, tmp_path, caplog):
    model = next(m for m in MODELS if REGISTRY[m] == "data/processed")
    caplog.set_level(logging.INFO)
    own.run([f"plot_model@{model}"])
    assert f"decision boundary not drawn: it needs exactly 2 numeric features and no " \
        f"categorical one, {model} has 4 numeric and 3 categorical: drew per-class ROC and " \
        "precision-recall on test instead" in caplog.messages
    one = Run(tmp_path, with_changes(own.params and yaml_params(own),
                                     {"data.features": ["bill_length_mm", "island"],
                                      "data.categorical": []}))
    one.run(["fetch", "plot_data"])
    assert png_size(one / "reports/figures/data.png") == (600, 150)
    assert "data figure skipped: it needs 2 numeric features, data.features has 1 " \
        "(bill_length_mm)" in caplog.messages


def test_own_predict_serves_a_raw_row_with_a_gap_and_an_unseen_category(own):
    from nnpipe import models, predict

    model = models.load(str(own.model_dir(next(m for m in MODELS
                                               if REGISTRY[m] == "data/processed"))))
    row = {"bill_length_mm": ["45"], "bill_depth_mm": [np.nan], "flipper_length_mm": [215.0],
           "body_mass_g": [5000], "island": ["Atlantis"], "sex": [np.nan], "year": ["2008"]}
    X = model.preprocessor.transform(row)  # (1, 12)
    state = json.loads((own / "data/processed/preprocess.json").read_text())
    scaler = state["scaler"]
    expected_depth = (state["imputer"]["bill_depth_mm"] - scaler["mean"][1]) / scaler["scale"][1]
    assert X[0, 1] == pytest.approx(expected_depth)
    assert X[0, 4:].tolist() == [0, 0, 0, *(state["imputer"]["sex"] == s for s in
                                            ("female", "male")), 0, 1, 0]
    result = predict.predict(model, row)
    assert result.labels[0] in state["classes"]


def yaml_params(run: Run) -> dict:
    import yaml

    return yaml.safe_load(run.params.read_text())


def _source_with_gaps(path: Path, rows: int, gaps: int) -> Path:
    """A CSV: 24 rows of c1 and c2, then c3: ``rows`` rows, ``gaps`` of them missing X2."""
    lines = [good_csv_text(rows_per_class=8).rstrip("\n").replace("c3", "c1")]
    lines += [f"{i},{'' if i < gaps else i},c3" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("rows, gaps, stage, fragments", [
    (9, 3, "split", ["class 'c3' has 6 row(s)", "at least 7 per class"]),
    (5, 5, "fetch", ["class 'c3' has no row left (data.missing=drop dropped 5 rows with a "
                     "missing feature)"]),
], ids=["too_few_left", "none_left"])
def test_a_class_that_drop_leaves_too_small_is_named(tmp_path, capsys, rows, gaps, stage,
                                                      fragments):
    source = _source_with_gaps(tmp_path / "mine.csv", rows, gaps)
    run = Run(tmp_path / "run", with_changes(TINY, {"fetch.source": str(source),
                                                    "data.missing": "drop"}))
    expect_error(capsys, stage, lambda: run.run(["fetch", "split"]), *fragments)
    assert not any(path.exists() for path in run.outputs("split"))


def test_drop_removes_the_rows_with_a_missing_cell_and_says_how_many(tmp_path, caplog):
    source = _source_with_gaps(tmp_path / "mine.csv", 12, 3)
    run = Run(tmp_path / "run", with_changes(TINY, {"fetch.source": str(source),
                                                    "data.missing": "drop"}))
    caplog.set_level(logging.INFO)
    run.run(["fetch", "split"])
    parts = [pd.read_parquet(run / f"data/split/{s}.parquet") for s in SPLITS]
    assert sum(map(len, parts)) == 24 + 12 - 3 and not any(f.isna().any().any() for f in parts)
    assert "data.missing=drop dropped 3 rows with a missing feature" in caplog.messages
    typed = json.loads((run / "data/schema.json").read_text())
    assert typed["rows"] == {"read": 36, "kept": 33, "dropped_missing_feature": 3,
                             "dropped_missing_label": 0}


KINDS = "X1,kind,color\n"
TRAIN_KINDS = KINDS + "".join(f"{i},{'ab'[i % 2]},c{i % 3}\n" for i in range(12))


def _splits(run: Run, tables: dict[str, str]) -> None:
    """Typed splits (Parquet) and a schema as fetch and split would write them, from CSV text."""
    from nnpipe import data, schema
    from nnpipe.core import tables as parquet

    for name, text in tables.items():
        typed = data.read_typed(text.encode(), name, ["X1", "kind"], "color", ["kind"], "median")
        parquet.write_parquet(str(run / f"data/split/{name}.parquet"), typed.table)
        if name == "train":
            schema.save(str(run / "data/schema.json"), typed.schema)


@pytest.mark.parametrize("val, changes, fragments", [
    (KINDS + "1,a,c1\n2,zz,c2\n", {"data.handle_unknown": "error"},
     ["val.parquet: column 'kind' row 2: category 'zz' was not in the train split (a, b)",
      "data.handle_unknown=error refuses it (ignore: all zeros)"]),
    (KINDS + "1,a,c1\n2,,c2\n", {"data.missing": "error"},
     ["val.parquet: column 'kind' row 2 is missing; a missing value needs"]),
], ids=["unknown_category", "missing_cell_not_imputed"])
def test_scale_encode_refuses_what_its_state_cannot_encode(tmp_path, capsys, val, changes,
                                                          fragments):
    run = Run(tmp_path, with_changes(TINY, {"data.features": ["X1", "kind"], **changes}))
    _splits(run, {"train": TRAIN_KINDS, "val": val, "test": TRAIN_KINDS})
    expect_error(capsys, "scale_encode", lambda: run.run(["scale_encode"]), *fragments)
    assert not any(path.exists() for path in run.outputs("scale_encode"))
    if "data.handle_unknown" in changes:  # ignore: an all-zero one-hot row
        write_params(run.params, with_changes(yaml_params(run), {"data.handle_unknown": "ignore"}))
        run.run(["scale_encode"])
        assert npz_arrays(run / "data/processed/val.npz")["X"][1, 1:].tolist() == [0.0, 0.0]


def test_scale_encode_refuses_to_impute_a_column_empty_in_train(tmp_path, capsys):
    run = Run(tmp_path, with_changes(TINY, {"data.features": ["X1", "kind"],
                                            "data.missing": "most_frequent"}))
    empty = KINDS + "".join(f"{i},{'a' if i == 0 else ''},c{i % 3}\n" for i in range(12))
    _splits(run, {"train": empty, "val": TRAIN_KINDS, "test": TRAIN_KINDS})
    table = pd.read_parquet(run / "data/split/train.parquet")
    table.loc[0, "kind"] = None
    table.to_parquet(run / "data/split/train.parquet")
    expect_error(capsys, "scale_encode", lambda: run.run(["scale_encode"]),
                 "train.parquet: column 'kind' has no value in the train split; "
                 "data.missing=most_frequent has nothing to impute it from")


# --- error contract ---------------------------------------------------------------------------

def expect_error(capsys, prefix: str, call, *fragments: str) -> str:
    """``call()`` exits 2 with one stderr line ``<prefix>: error: ...`` naming the culprit."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prefix}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def fails_and_keeps(capsys, tiny: Run, tmp_path: Path, name: str, changes: dict,
                    *fragments: str) -> None:
    """Stage ``name`` on params with ``changes`` refuses in one line, once with no outputs
    yet (none appear) and once over the tiny run's outputs (left byte for byte)."""
    stage = STAGES[name]
    params = write_params(tmp_path / "params.yaml", with_changes(TINY, changes))
    fragments = tuple(f.replace("{params}", str(params)) for f in fragments)
    for label, with_outputs in (("fresh", False), ("previous", True)):
        run = Run(tmp_path / label, with_changes(TINY, changes))
        for path in (*stage.deps, *(stage.outs if with_outputs else ())):
            source, target = tiny / path, run / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)
        before = tree_bytes(run.root)
        argv = stage.with_args(params=str(params))
        with_cwd = lambda: (os.chdir(run.root), stage.main(argv))  # noqa: E731
        cwd = os.getcwd()
        try:
            expect_error(capsys, stage.prefix, with_cwd, *fragments)
        finally:
            os.chdir(cwd)
        assert tree_bytes(run.root) == before, label


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server (127.0.0.1, free port) serving a good CSV; 500 under /error500."""
    yield from local_http.serve_good_csv(tmp_path_factory)


def _body(extra: str) -> str:
    return good_csv_text() + extra


GOOD_SHA = hashlib.sha256(good_csv_text().encode()).hexdigest()
# case id -> (file content or URL, params changes, message fragments); "{src}" is replaced by
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
    "nan": (_body("0.5,nan,c1\n"), {}, ["{src}", "column 'X2' row 26", "is missing",
                                        "set data.missing to drop, mean, median"]),
    "empty_value": (_body(",0.5,c1\n"), {}, ["{src}", "column 'X1' row 26"]),
    "inf": (_body("inf,0.5,c1\n"), {}, ["{src}", "column 'X1' row 26", "inf", "finite"]),
    "missing_label": (_body("0.5,0.5,\n"), {}, ["{src}", "column 'color' row 26", "no label"]),
    "single_class": ("X1,X2,color\n" + "".join(f"{i},{i},c1\n" for i in range(10)), {},
                     ["{src}", "column 'color' has 1 class", "c1"]),
    "duplicate_columns": ("X1,X1,color\n" + good_csv_text().split("\n", 1)[1], {},
                          ["{src}", "duplicate column name 'X1'"]),
    "features_name_target": (good_csv_text(), {"data.features": ["X1", "color"]},
                             ["{src}", "data.target 'color'", "data.features"]),
    # what another data.missing policy still refuses, and categorical columns
    "mixed_column_imputed": (_body("abc,0.5,c1\n"), {"data.missing": "median"},
                             ["{src}", "column 'X1' row 26 has value 'abc'",
                              "or categories (list 'X1' in data.categorical)"]),
    "all_missing_column": ("X1,X2,color\n" + "".join(f"{i},,c{i % 3}\n" for i in range(12)),
                           {"data.missing": "mean"},
                           ["{src}", "column 'X2' has no values (every cell is empty, NA or NaN)"]),
    "too_many_categories": ("X1,X2,kind,color\n" + "".join(f"{i},{i},k{i},c{i % 3}\n"
                                                          for i in range(1001)),
                            {"data.features": ["X1", "X2", "kind"]},
                            ["{src}", "categorical column 'kind' has 1001 categories, more than "
                             "the 1000 allowed"]),
    "categorical_not_a_feature": (good_csv_text(), {"data.categorical": ["X3"]},
                                  ["data.categorical=['X3'] names 'X3', which is not in "
                                   "data.features"]),
    "binary_garbage": (np.random.RandomState(0).bytes(300_000), {}, ["{src}", "not a"]),
    "sha256_mismatch": (good_csv_text(), {"fetch.sha256": "0" * 64},
                        ["{src}", "sha256", "0" * 64, "fetch.sha256", GOOD_SHA]),
    "url_not_pinned": ("{url}/good.csv", {"fetch.sha256": None},
                       ["{src}", "must be pinned", f"fetch.sha256 to {GOOD_SHA}"]),
    "http_404": ("{url}/missing.csv", {}, ["{src}", "HTTP 404"]),
    "http_500": ("{url}/error500/good.csv", {}, ["{src}", "HTTP 500"]),
    "unreachable": ("http://127.0.0.1:{closed}/good.csv", {"fetch.timeout": 5},
                    ["{src}", "cannot fetch"]),
    "unknown_param": (good_csv_text(), {"fetch.url": "x"}, ["unknown key fetch.url"]),
    "bad_sha256_param": (good_csv_text(), {"fetch.sha256": "abc"}, ["fetch.sha256='abc'"]),
}


def fetch_case(name: str, tmp_path: Path, url: str) -> tuple[dict, list[str]]:
    """(params changes, fragments) for one FETCH_CASES entry, its file written."""
    content, changes, fragments = FETCH_CASES[name]
    if isinstance(content, str) and content.startswith(("{url}", "http://")):
        source = content.format(url=url, closed=local_http.closed_port())
        changes = {"fetch.sha256": GOOD_SHA, **changes}
    else:
        source = str(tmp_path / f"{name}.csv")
        if isinstance(content, str):
            Path(source).write_text(content)
        elif isinstance(content, bytes):
            Path(source).write_bytes(content)
    return {"fetch.source": source, **changes}, [f.replace("{src}", source) for f in fragments]


@pytest.mark.parametrize("case", FETCH_CASES)
def test_fetch_error_is_one_line_and_writes_nothing(tiny, server, tmp_path, capsys, case):
    changes, fragments = fetch_case(case, tmp_path, server)
    fails_and_keeps(capsys, tiny, tmp_path, "fetch", changes, *fragments)


@pytest.mark.parametrize("case, shown", [("nan", "is missing (empty, NA or nan);"),
                                         ("inf", "has value 'inf';"),
                                         ("non_numeric", "has value 'abc';")])
def test_fetch_bad_value_message_shows_the_plain_value(tiny, tmp_path, capsys, case, shown):
    changes, _ = fetch_case(case, tmp_path, "")
    fails_and_keeps(capsys, tiny, tmp_path, "fetch", changes, shown)


def test_fetch_from_url_with_matching_sha256(server, tmp_path):
    run = Run(tmp_path, with_changes(TINY, {"fetch.source": f"{server}/good.csv",
                                            "fetch.sha256": GOOD_SHA}))
    run.run(["fetch"])
    frame = pd.read_parquet(run / "data/table.parquet")
    assert list(frame.columns) == ["X1", "X2", "color"] and len(frame) == 24


def _bad_value(name: str) -> tuple[dict, str]:
    """(params changes, message fragment) that break one declared params name."""
    if name == "seed":
        return {"seed": -1}, "seed=-1"
    if "." in name:
        return {name: {"bad": 1}}, f"{name}="
    return {f"{name}.zz": 1}, f"unknown key {name}.zz"


@pytest.mark.parametrize("name", [n for n in STAGES if n != "check_params"])
def test_a_bad_declared_param_is_one_line_and_writes_nothing(tiny, tmp_path, capsys, name):
    """The runner validates every params name a stage declares before the stage runs (the
    messages themselves: tests/test_params.py); here the last one each stage declares."""
    import argparse
    import importlib

    from stages.__main__ import declared

    module = importlib.import_module(STAGES[name].module)
    last = declared(module, argparse.Namespace(name=name.partition("@")[2]))[-1]
    changes, fragment = _bad_value(last)
    fails_and_keeps(capsys, tiny, tmp_path, name, changes, "{params}", fragment)


def test_random_data_too_small_for_the_split_writes_nothing(tiny, tmp_path, capsys):
    fails_and_keeps(capsys, tiny, tmp_path, "random_data", {"random_data.samples_per_class": 2},
                    "class '0' has 2 row(s)")


def test_hidden_dims_auto_too_wide_for_the_data_is_one_line(tiny, tmp_path, capsys):
    spiral_model = next(m for m in MODELS if REGISTRY[m] == "data/processed")
    big = Run(tmp_path / "big", with_changes(TINY, {"spiral.samples_per_class": 20_000,
                                                    f"train_{spiral_model}.hidden_dims": "auto"}))
    big.run(["spiral", "fetch", "split", "scale_encode"])
    cwd = os.getcwd()
    try:
        os.chdir(big.root)
        expect_error(capsys, f"train_{spiral_model}", STAGES[f"train@{spiral_model}"].main,
                     f"train_{spiral_model}.hidden_dims=auto gives 2*60000+2=120002 hidden units",
                     "for a data set of 60000 rows", "at most 100000")
    finally:
        os.chdir(cwd)
    assert not big.model_dir(spiral_model).exists()


def test_split_refuses_a_class_too_small_for_the_split(tmp_path, capsys):
    source = tmp_path / "mine.csv"
    source.write_text(good_csv_text(rows_per_class=8) + "".join(f"{i},{i},c4\n" for i in range(5)))
    run = Run(tmp_path / "run", with_changes(TINY, {"fetch.source": str(source)}))
    expect_error(capsys, "split", lambda: run.run(["fetch", "split"]), "data/table.parquet",
                 "class 'c4' has 5 row(s)", "at least 7")


@pytest.mark.parametrize("name", [n for n in STAGES if n != "check_params"])
def test_a_missing_input_is_one_line(tmp_path, capsys, monkeypatch, name):
    """Each stage run where none of its inputs exist names the first one it reads."""
    stage = STAGES[name]
    run = Run(tmp_path, TINY)
    monkeypatch.chdir(run.root)
    if not stage.deps:
        pytest.skip("reads no data file")
    line = expect_error(capsys, stage.prefix, stage.main)
    assert "not found" in line and any(dep in line for dep in stage.deps), line
    assert sorted(p.name for p in run.root.iterdir()) == ["params.yaml"]


def test_check_params_refuses_what_dvc_deems_unchanged(tmp_path, capsys, monkeypatch):
    """1 == True and 1234.0 == 1234 in Python: DVC sees no change, check_params does."""
    for changes, fragment in (({"math.portable": 1}, "math.portable=1"),
                              ({"seed": 1234.0}, "seed=1234.0"),
                              ({f"{model_sections()[0]}.epochs": 10.0}, ".epochs=10.0"),
                              ({"unknown_section": {"a": 1}}, "unknown section unknown_section")):
        run = Run(tmp_path / fragment.strip(".=").replace("=", "-"), with_changes(TINY, changes))
        monkeypatch.chdir(run.root)
        expect_error(capsys, "check_params", STAGES["check_params"].main, fragment)
    Run(tmp_path / "good", TINY).run(["check_params"])


def test_plot_model_refuses_a_confusion_file_it_cannot_use(tiny, tmp_path, capsys):
    model = MODELS[0]
    for content, fragment in (("[1, 2", "not valid JSON"), ('{"train": {}}', model)):
        run = Run(tmp_path / fragment.replace(" ", "_"), TINY)
        stage = STAGES[f"plot_model@{model}"]
        for dep in stage.deps:
            target = run / dep
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(tiny / dep, target) if (tiny / dep).is_dir() else \
                shutil.copy(tiny / dep, target)
        confusion = run / f"reports/confusion/{model}.json"
        confusion.write_text(content)
        cwd = os.getcwd()
        try:
            os.chdir(run.root)
            expect_error(capsys, stage.prefix, stage.main, f"reports/confusion/{model}.json",
                         fragment)
        finally:
            os.chdir(cwd)
        assert not (run / "reports/figures").exists()


@pytest.mark.parametrize("X, y", [(np.zeros((6, 3)), np.arange(6) % 3),
                                  (np.zeros((6, 2)), np.full(6, 9))],
                         ids=["three_features_for_a_two_feature_model", "label_out_of_range"])
def test_evaluate_refuses_a_split_that_does_not_fit_the_model(tiny, tmp_path, capsys, X, y):
    from nnpipe.core import files

    bad = tmp_path / "bad"
    for split_name in SPLITS:
        files.write_npz(str(bad / f"{split_name}.npz"), {"X": X, "y": y.astype(np.int64)})
    stage = STAGES["evaluate"]
    argv = stage.with_args(models_dir=str(tiny / "models"))
    start, end = argv.index("--models-dir") + 2, argv.index("--headline")
    argv[start:end] = [f"--{MODELS[0]}", str(bad)]
    out = Run(tmp_path / "out", TINY)
    cwd = os.getcwd()
    try:
        os.chdir(out.root)
        expect_error(capsys, "evaluate", lambda: stage.main(argv), str(bad / "train.npz"))
    finally:
        os.chdir(cwd)
    assert [p.name for p in out.root.iterdir()] == ["params.yaml"]


@pytest.mark.parametrize("pairs, fragment", [
    ([], "expected --NAME VALUE pairs, one per model"),
    (["--linear"], "expected --NAME VALUE, got --linear"),
    (["linear", "data/processed"], "expected --NAME VALUE, got linear"),
    (["--lin/ear", "data/processed"], "expected --NAME VALUE"),
    (["--linear", "a", "--linear", "b"], "--linear given twice"),
], ids=["none", "no_value", "no_dashes", "not_an_identifier", "twice"])
def test_evaluate_refuses_a_malformed_model_registry(tiny, tmp_path, capsys, monkeypatch, pairs,
                                                     fragment):
    """dvc.yaml passes its ${models} registry as --NAME DATA_DIR pairs: anything else is a
    usage error (exit 2, argparse's one line), before anything is read or written."""
    argv = STAGES["evaluate"].with_args(models_dir=str(tiny / "models"))
    argv[argv.index("--models-dir") + 2:argv.index("--headline")] = pairs
    monkeypatch.chdir(Run(tmp_path, TINY).root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        STAGES["evaluate"].main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


def test_evaluate_follows_the_registry_it_is_given(tiny, tmp_path, monkeypatch):
    """Two models under other names: the metrics hold exactly those."""
    first, second = MODELS[0], MODELS[-1]
    for name, source in (("wide_mlp", first), ("base", second)):
        shutil.copytree(tiny.model_dir(source), tmp_path / "models" / name)
    argv = STAGES["evaluate"].with_args(models_dir=str(tmp_path / "models"))
    argv[argv.index("--models-dir") + 2:argv.index("--headline")] = [
        "--wide_mlp", str(tiny.data_dir(first)), "--base", str(tiny.data_dir(second))]
    monkeypatch.chdir(Run(tmp_path, TINY).root)
    STAGES["evaluate"].main(argv)
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert set(metrics) == {"wide_mlp", "base"}
    original = json.loads((tiny / "reports/metrics.json").read_text())
    assert metrics["wide_mlp"] == original[first] and metrics["base"] == original[second]
    assert sorted(p.name for p in (tmp_path / "reports/predictions").iterdir()) == \
        ["base.csv", "wide_mlp.csv"]


@pytest.mark.slow
def test_debug_env_in_a_real_process(tmp_path):
    """The same contract seen from outside, through dvc.yaml's runner (``python -m stages``):
    exit 2 and one line; a traceback with NNPIPE_DEBUG=1."""
    run = Run(tmp_path, with_changes(TINY, {"fetch.source": str(tmp_path / "no.csv")}))
    argv = STAGES["fetch"].command()
    env = {k: v for k, v in os.environ.items() if k != "NNPIPE_DEBUG"}
    env["PYTHONPATH"] = str(ROOT)
    quiet = subprocess.run(argv, cwd=run.root, env=env, capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr == f"fetch: error: {tmp_path / 'no.csv'}: file not found (fetch.source)\n"
    assert quiet.stdout == ""
    loud = subprocess.run(argv, cwd=run.root, env={**env, "NNPIPE_DEBUG": "1"},
                          capture_output=True, text=True)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "PipelineError" in loud.stderr
    assert not (run / "data/table.parquet").exists()
