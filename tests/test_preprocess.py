"""nnpipe.preprocess: scaler/encoder fit on train only, state as JSON, rebuilt without pickle;
the processed splits a model trains on."""
from __future__ import annotations

import copy
import io
import json
import re

import numpy as np
import pandas as pd
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


# --- tables: numbers, categories and missing cells (ColumnTransformer) ------------------------

INPUTS = ("size", "depth", "island", "year")
CATEGORICAL = ("island", "year")


def _table(n: int, seed: int, islands=("Biscoe", "Dream", "Torgersen")):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({"size": rng.randn(n) * 3 + 40, "depth": rng.randn(n) + 17,
                          "island": rng.choice(islands, n).astype(object),
                          "year": rng.choice(["2007", "2008"], n).astype(object)})
    frame.loc[[1, 4], "size"] = np.nan
    frame.loc[2, "island"] = np.nan
    return frame


@pytest.fixture(scope="module")
def table_splits():
    train, test = _table(60, 0), _table(20, 1)
    labels = np.array(["a", "b", "c"])[np.arange(60) % 3]
    return train, test, labels


def fit_frame(train, inputs, categorical, labels, *args, **kwargs):
    """preprocess.fit_frame with the labels as scale_encode gives them: codes into the classes."""
    classes, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return preprocess.fit_frame(train, inputs, categorical, codes, tuple(classes), *args, **kwargs)


def _fit_table(table_splits, missing="median", handle_unknown="ignore"):
    train, _, labels = table_splits
    return fit_frame(train, INPUTS, CATEGORICAL, labels, missing, handle_unknown,
                                rows=80, source="train.csv")


def _sklearn(train, missing="median"):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    return ColumnTransformer([
        ("n", make_pipeline(SimpleImputer(strategy=missing), StandardScaler()), ["size", "depth"]),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"),
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
         list(CATEGORICAL))], sparse_threshold=0.0).fit(train)


@pytest.mark.parametrize("missing", ["mean", "median", "most_frequent"])
def test_fit_frame_is_scikit_learns_column_transformer_fit_on_train(table_splits, missing):
    train, test, _ = table_splits
    state = _fit_table(table_splits, missing)
    reference = _sklearn(train, missing)
    for split in (train, test):
        np.testing.assert_array_equal(state.transform(split), reference.transform(split))
    assert state.features == ("size", "depth", "island_Biscoe", "island_Dream",
                              "island_Torgersen", "year_2007", "year_2008")
    assert state.categories == (("island", ("Biscoe", "Dream", "Torgersen")),
                                ("year", ("2007", "2008")))
    fill = dict(zip(state.inputs, state.fill))
    if missing != "most_frequent":
        assert fill["size"] == pytest.approx(getattr(train["size"], missing)(), rel=1e-15)
    assert fill["island"] == train["island"].mode()[0]  # categories: the most frequent


def test_the_imputers_values_come_from_train_only(table_splits):
    train, test, _ = table_splits
    fill = dict(zip(INPUTS, _fit_table(table_splits).fill))
    assert fill["size"] == train["size"].median() != pd.concat([train, test])["size"].median()
    assert fill["depth"] == train["depth"].median()


@pytest.mark.parametrize("rebuild", [lambda s: Preprocessor.from_dict(s.to_dict()),
                                     _json_round_trip], ids=["dict", "json"])
def test_a_table_state_round_trips_and_transforms_to_the_same_bytes(table_splits, rebuild):
    state = _fit_table(table_splits)
    rebuilt = rebuild(state)
    assert rebuilt == state
    for split in table_splits[:2]:
        assert rebuilt.transform(split).tobytes() == state.transform(split).tobytes()
    text = json.dumps(state.to_dict(), allow_nan=False)
    assert json.loads(text)["imputer"]["island"] == dict(zip(INPUTS, state.fill))["island"]


def test_rebuilding_and_transforming_warns_nothing(table_splits):
    import warnings

    state = _fit_table(table_splits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Preprocessor.from_dict(state.to_dict()).transform(table_splits[1])
        preprocess.fit(np.eye(3), ["a", "b", "a"], ["p", "q", "r"], rows=3).transform(np.eye(3))


def test_an_unknown_category_is_all_zeros_with_ignore_and_refused_with_error(table_splits):
    unseen = _table(5, 2, islands=("Atlantis",))
    X = _fit_table(table_splits, handle_unknown="ignore").transform(unseen)
    assert X[[0, 1, 3, 4], 2:5].tolist() == [[0.0, 0.0, 0.0]] * 4
    assert X[2, 2:5].sum() == 1.0  # row 2's island is missing: imputed, a known one
    with pytest.raises(PipelineError, match=re.escape(
            "column 'island' row 2: category 'Atlantis' was not in the train split (Biscoe, "
            "Dream, Torgersen); data.handle_unknown=error refuses it (ignore: all zeros)")):
        _fit_table(table_splits, handle_unknown="error").transform(unseen)


@pytest.mark.parametrize("missing", ["error", "drop"])
def test_a_state_that_imputes_nothing_refuses_a_missing_cell(table_splits, missing):
    complete = table_splits[0].dropna().reset_index(drop=True)
    labels = np.array(["a", "b"])[np.arange(len(complete)) % 2]
    state = fit_frame(complete, INPUTS, CATEGORICAL, labels, missing, "error",
                                 rows=len(complete))
    assert state.fill == ()
    with pytest.raises(PipelineError, match=re.escape(
            f"in.csv row 3 'size' is missing; a missing value needs a model trained with ")):
        state.transform(table_splits[0], lambda row, name: f"in.csv row {row + 2} '{name}'")
    with pytest.raises(PipelineError, match=re.escape(
            f"train.csv: column 'size' row 3 is missing; a missing value needs a model trained with ")):
        fit_frame(table_splits[0], INPUTS, CATEGORICAL, table_splits[2], missing,
                             "error", rows=60, source="train.csv")


def test_a_column_empty_in_train_cannot_be_imputed(table_splits):
    train = table_splits[0].assign(depth=np.nan)
    with pytest.raises(PipelineError, match=re.escape(
            "train.csv: column 'depth' has no value in the train split; data.missing=mean has "
            "nothing to impute it from")):
        fit_frame(train, INPUTS, CATEGORICAL, table_splits[2], "mean", "error",
                             rows=60, source="train.csv")


def test_all_categorical_inputs_need_no_scaler(table_splits):
    train, test, labels = table_splits
    state = fit_frame(train, CATEGORICAL, CATEGORICAL, labels, "most_frequent",
                                 "ignore", rows=80)
    assert state.mean == () and state.numeric == () and len(state.features) == 5
    assert Preprocessor.from_dict(state.to_dict()).transform(test).shape == (20, 5)


def test_numbers_declared_categorical_are_their_text():
    values = pd.Series([2007, np.nan, 2008], dtype=object)
    assert preprocess.as_text(values).tolist()[::2] == ["2007", "2008"]
    assert pd.isna(preprocess.as_text(values)[1])


@pytest.mark.parametrize("change", [
    lambda s: s.__setitem__("missing", "impute"),
    lambda s: s["encoder"].__setitem__("handle_unknown", "warn"),
    lambda s: s.__setitem__("imputer", {}),
    lambda s: s["imputer"].__setitem__("size", float("nan")),
    lambda s: s["imputer"].__setitem__("size", "big"),
    lambda s: s["imputer"].__setitem__("island", 3),
    lambda s: s["imputer"].pop("year"),
    lambda s: s["encoder"]["categories"].__setitem__("island", ["Biscoe", "Biscoe", "Dream"]),
    lambda s: s["encoder"]["categories"].__setitem__("island", [1, 2, 3]),
    lambda s: s["encoder"]["categories"].__setitem__("colour", ["red"]),
], ids=["policy", "handle_unknown", "no_imputer", "nan_fill", "text_fill", "number_fill",
        "fill_missing_a_column", "repeated_level", "number_levels", "unknown_column"])
def test_malformed_table_state(table_splits, change):
    state = copy.deepcopy(_fit_table(table_splits).to_dict())
    change(state)
    with pytest.raises(PipelineError, match=re.escape("s.json: malformed scaler/encoder state")):
        Preprocessor.from_dict(state, source="s.json")


def test_a_table_state_whose_features_do_not_fit_its_categories(table_splits):
    state = copy.deepcopy(_fit_table(table_splits).to_dict())
    state["encoder"]["categories"]["island"].append("Atlantis")
    with pytest.raises(PipelineError, match=re.escape("s.json: scaler/encoder state has "
                                                      "inconsistent lengths")):
        Preprocessor.from_dict(state, source="s.json")


def test_an_all_numeric_table_fits_as_the_array_does(splits, fitted):
    X_train, labels_train, X_test, _ = splits
    frame = pd.read_csv(io.StringIO(pd.DataFrame(X_train, columns=FEATURES).to_csv(index=False)))
    state = fit_frame(frame, FEATURES, (), labels_train, "error", "error", rows=ROWS)
    np.testing.assert_allclose(state.mean, fitted.mean, rtol=1e-15)
    np.testing.assert_allclose(state.var, fitted.var, rtol=1e-15)
    assert state.features == state.inputs == FEATURES and state.classes == fitted.classes
    np.testing.assert_allclose(state.transform(X_test), fitted.transform(X_test), rtol=1e-14)
