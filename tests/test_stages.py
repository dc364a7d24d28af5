"""Every stage's main(argv), run in a temp dir exactly as dvc.yaml wires them (tests/pipeline.py).

A session-scoped tiny run of the whole pipeline feeds checks of each output's contents, for
every model of the registry; the stages' byte-for-byte reruns, a user CSV with three features,
a URL source and another model registry. Bad input: the contract table, tests/test_reliability.py.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import local_http
import penguins
from local_http import good_csv_text
from nnpipe.models import CURVES
from pipeline import MODELS, REGISTRY, SPLITS, STAGES, Run, tiny_params, tree_bytes, with_changes

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


# --- a URL source and another registry -------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server (127.0.0.1, free port) serving a good CSV; 500 under /error500."""
    yield from local_http.serve_good_csv(tmp_path_factory)


GOOD_SHA = hashlib.sha256(good_csv_text().encode()).hexdigest()


def test_fetch_from_url_with_matching_sha256(server, tmp_path):
    run = Run(tmp_path, with_changes(TINY, {"fetch.source": f"{server}/good.csv",
                                            "fetch.sha256": GOOD_SHA}))
    run.run(["fetch"])
    frame = pd.read_parquet(run / "data/table.parquet")
    assert list(frame.columns) == ["X1", "X2", "color"] and len(frame) == 24


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


