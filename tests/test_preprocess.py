"""nnpipe.preprocess: scaler/encoder fit on train only, state as JSON, rebuilt without pickle;
the processed splits a model trains on."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from sklearn.preprocessing import LabelEncoder, StandardScaler

from nnpipe import preprocess
from nnpipe.core import files
from nnpipe.core.errors import PipelineError
from nnpipe.preprocess import Preprocessor, TrainData

FEATURES = ("X1", "X2")
ROWS = 57  # the whole data set's rows: train (40) and the other splits


@pytest.fixture(scope="module")
def splits():
    rng = np.random.RandomState(0)
    X_train = rng.randn(40, 2) * [2.0, 0.5] + [1.0, -3.0]
    X_test = rng.randn(15, 2) * 4.0 + 10.0  # a very different distribution
    labels_train = np.array(["c1"] * 20 + ["c3"] * 12 + ["c2"] * 8)
    labels_test = np.array(["c2", "c1", "c3", "c3", "c1"])
    return X_train, labels_train, X_test, labels_test


@pytest.fixture(scope="module")
def fitted(splits):
    X_train, labels_train, _, _ = splits
    return preprocess.fit(X_train, labels_train, list(FEATURES), rows=ROWS)


def test_fit_uses_train_only(splits, fitted):
    X_train, _, X_test, _ = splits
    np.testing.assert_allclose(fitted.mean, X_train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fitted.scale, X_train.std(axis=0), rtol=1e-12)
    full_mean = np.vstack([X_train, X_test]).mean(axis=0)
    assert np.all(np.abs(np.array(fitted.mean) - full_mean) > 0.5)
    assert fitted.n_samples_seen == 40


def test_fit_does_not_mutate_inputs(splits):
    X_train, labels_train, _, _ = splits
    X_copy, labels_copy = X_train.copy(), labels_train.copy()
    preprocess.fit(X_train, labels_train, FEATURES, rows=ROWS)
    np.testing.assert_array_equal(X_train, X_copy)
    np.testing.assert_array_equal(labels_train, labels_copy)


def test_classes_sorted_and_counted(fitted):
    assert fitted.features == FEATURES
    assert fitted.classes == ("c1", "c2", "c3")
    assert fitted.class_counts == (20, 8, 12)


def test_rows_are_the_whole_data_sets_not_the_train_splits(fitted):
    assert fitted.rows == ROWS and type(fitted.rows) is int
    assert fitted.n_samples_seen == 40  # the scaler saw the train split only


def test_class_weights_are_one_over_count(fitted):
    np.testing.assert_array_equal(fitted.class_weights, [1 / 20, 1 / 8, 1 / 12])
    assert fitted.class_weights.dtype == np.float64


def test_transformed_train_is_standardized(splits, fitted):
    Z = fitted.transform(splits[0])
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-12)


def _json_round_trip(state: Preprocessor) -> Preprocessor:
    return Preprocessor.from_dict(json.loads(json.dumps(state.to_dict())))


@pytest.mark.parametrize("rebuild", [lambda s: Preprocessor.from_dict(s.to_dict()),
                                     _json_round_trip], ids=["dict", "json"])
def test_round_trip_matches_fresh_sklearn(splits, fitted, rebuild):
    X_train, labels_train, X_test, labels_test = splits
    rebuilt = rebuild(fitted)
    assert rebuilt == fitted

    scaler = StandardScaler().fit(X_train)
    encoder = LabelEncoder().fit(labels_train)
    np.testing.assert_array_equal(rebuilt.transform(X_test), scaler.transform(X_test))
    np.testing.assert_array_equal(rebuilt.transform(X_train), scaler.transform(X_train))
    codes = rebuilt.encode(labels_test)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, encoder.transform(labels_test))
    np.testing.assert_array_equal(rebuilt.decode(np.array([2, 0, 1])),
                                  encoder.inverse_transform([2, 0, 1]))
    np.testing.assert_array_equal(rebuilt.decode(codes), labels_test)
    np.testing.assert_array_equal(rebuilt.scaler().inverse_transform(rebuilt.transform(X_test)),
                                  scaler.inverse_transform(scaler.transform(X_test)))


def test_to_dict_is_plain_json(fitted):
    state = fitted.to_dict()
    text = json.dumps(state, allow_nan=False)
    assert json.loads(text) == state
    assert state["classes"] == ["c1", "c2", "c3"]
    assert state["class_counts"] == [20, 8, 12]
    assert state["class_weights"] == [1 / 20, 1 / 8, 1 / 12]
    assert set(state["scaler"]) == {"mean", "scale", "var", "n_samples_seen"}
    assert state["rows"] == ROWS


def test_transform_does_not_mutate_input(splits, fitted):
    X_test = splits[2].copy()
    fitted.transform(X_test)
    np.testing.assert_array_equal(X_test, splits[2])


def test_save_and_load(tmp_path, fitted):
    path = tmp_path / "sub" / "preprocess.json"
    preprocess.save(str(path), fitted)
    assert preprocess.load(str(path)) == fitted
    text = path.read_text()
    assert json.loads(text) == fitted.to_dict()
    assert list(json.loads(text)) == sorted(json.loads(text))  # sorted keys


def test_load_missing_file(tmp_path):
    path = tmp_path / "none.json"
    with pytest.raises(PipelineError, match=re.escape(f"{path}: file not found")):
        preprocess.load(str(path))


def test_load_malformed_file_names_it(tmp_path, fitted):
    path = tmp_path / "preprocess.json"
    state = fitted.to_dict()
    del state["scaler"]["var"]
    path.write_text(json.dumps(state))
    with pytest.raises(PipelineError,
                       match=re.escape(f"{path}: malformed scaler/encoder state (KeyError('var')")):
        preprocess.load(str(path))


def _broken(fitted, change):
    state = copy.deepcopy(fitted.to_dict())
    change(state)
    return state


@pytest.mark.parametrize("change", [
    lambda s: s.pop("scaler"),
    lambda s: s.pop("classes"),
    lambda s: s["scaler"].pop("mean"),
    lambda s: s["scaler"].__setitem__("mean", ["x", 1.0]),
    lambda s: s["scaler"].__setitem__("n_samples_seen", "many"),
    lambda s: s["scaler"].__setitem__("scale", None),
    lambda s: s.__setitem__("class_counts", [1, "two", 3]),
    lambda s: s.__setitem__("scaler", [1, 2]),
    lambda s: s.pop("rows"),
    lambda s: s.__setitem__("rows", "many"),
], ids=["no-scaler", "no-classes", "no-mean", "text-mean", "text-n", "null-scale",
        "text-count", "list-scaler", "no-rows", "text-rows"])
def test_malformed_state(fitted, change):
    state = _broken(fitted, change)
    with pytest.raises(PipelineError, match=re.escape("state.json: malformed scaler/encoder state")):
        Preprocessor.from_dict(state, source="state.json")


@pytest.mark.parametrize("state", [None, [1, 2], "text"])
def test_non_mapping_state(state):
    with pytest.raises(PipelineError, match="^preprocess state: malformed scaler/encoder state"):
        Preprocessor.from_dict(state)


@pytest.mark.parametrize("change", [
    lambda s: s["scaler"].__setitem__("mean", [0.0]),
    lambda s: s["scaler"].__setitem__("var", [1.0, 1.0, 1.0]),
    lambda s: s.__setitem__("features", ["X1"]),
    lambda s: s.__setitem__("class_counts", [1, 2]),
    lambda s: s.update(classes=[], class_counts=[]),
], ids=["short-mean", "long-var", "one-feature", "short-counts", "no-classes"])
def test_inconsistent_lengths(fitted, change):
    state = _broken(fitted, change)
    with pytest.raises(PipelineError,
                       match=re.escape("state.json: scaler/encoder state has inconsistent lengths")):
        Preprocessor.from_dict(state, source="state.json")


def test_preprocessor_is_frozen(fitted):
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        fitted.mean = (0.0, 0.0)


# --- the processed splits a model trains on ---------------------------------------------------

def test_train_data_defaults_to_no_class_weights():
    data = TrainData(np.zeros((2, 1)), np.zeros(2), np.zeros((1, 1)), np.zeros(1))
    assert data.class_weights is None


def _write_split(path, X, y):
    files.write_npz(str(path), {"X": X, "y": y})
    return str(path)


def test_load_train_data(tmp_path, fitted):
    train = _write_split(tmp_path / "train.npz", np.ones((4, 2)), np.array([0, 1, 0, 1]))
    val = _write_split(tmp_path / "val.npz", np.zeros((2, 2)), np.array([1, 0]))
    data = preprocess.load_train_data(train, val, fitted)
    assert data.X_train.shape == (4, 2) and data.X_val.shape == (2, 2)
    np.testing.assert_array_equal(data.y_train, [0, 1, 0, 1])
    np.testing.assert_array_equal(data.y_val, [1, 0])
    np.testing.assert_array_equal(data.class_weights, fitted.class_weights)


@pytest.mark.parametrize("bad", ["train", "val"])
def test_load_train_data_feature_count_mismatch(tmp_path, fitted, bad):
    paths = {}
    for name in ("train", "val"):
        X = np.zeros((3, 3 if name == bad else 2))
        paths[name] = _write_split(tmp_path / f"{name}.npz", X, np.array([1, 0, 2]))
    with pytest.raises(PipelineError, match=re.escape(
            f"{paths[bad]}: has 3 features, the scaler state has 2; re-run the data stages")):
        preprocess.load_train_data(paths["train"], paths["val"], fitted)


def test_load_train_data_missing_split(tmp_path, fitted):
    val = _write_split(tmp_path / "val.npz", np.zeros((2, 2)), np.array([1, 0]))
    missing = tmp_path / "train.npz"
    with pytest.raises(PipelineError, match=re.escape(f"{missing}: file not found")):
        preprocess.load_train_data(str(missing), val, fitted)
