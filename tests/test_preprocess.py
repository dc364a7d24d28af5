"""nnpipe.preprocess: imputer, scaler and encoder steps fit on train only, their state as JSON;
scikit-learn's own transformers are the oracle (the same bytes). The processed splits a model
trains on."""
from __future__ import annotations

import copy
import io
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

from nnpipe import preprocess, training
from nnpipe.core import files
from nnpipe.core.errors import PipelineError
from nnpipe.preprocess import Preprocessor

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
    return preprocess.fit(X_train, labels_train, FEATURES, rows=ROWS)


def _json_round_trip(state: Preprocessor) -> Preprocessor:
    return Preprocessor.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False)))


def test_an_array_is_scaled_and_labelled_as_scikit_learn_does_fit_on_train_only(splits, fitted):
    X_train, labels_train, X_test, labels_test = splits
    scaler, labels = StandardScaler().fit(X_train), LabelEncoder().fit(labels_train)
    assert fitted.scaler.mean == tuple(scaler.mean_) and fitted.scaler.var == tuple(scaler.var_)
    assert fitted.scaler.n_samples_seen == 40 and fitted.rows == ROWS and type(fitted.rows) is int
    assert fitted.classes == ("c1", "c2", "c3") and fitted.class_counts == (20, 8, 12)
    for state in (fitted, _json_round_trip(fitted)):
        assert state == fitted
        for X in (X_train, X_test):
            assert state.transform(X).tobytes() == scaler.transform(X).tobytes()
        codes = state.encode(labels_test)
        assert codes.dtype == np.int64 and codes.tolist() == labels.transform(labels_test).tolist()


def test_fit_and_transform_mutate_nothing(splits, fitted):
    X_train, labels_train, X_test, _ = splits
    copies = [X_train.copy(), labels_train.copy(), X_test.copy()]
    preprocess.fit(X_train, labels_train, FEATURES, rows=ROWS).transform(X_test)
    for before, after in zip(copies, (X_train, labels_train, X_test)):
        np.testing.assert_array_equal(before, after)


def test_an_unknown_label_is_refused_by_name(fitted):
    with pytest.raises(PipelineError, match=re.escape("a label is not one of the classes "
                                                      "(c1, c2, c3)")):
        fitted.encode(["c1", "c9"])


def test_save_and_load_as_sorted_plain_json(tmp_path, fitted):
    path = tmp_path / "sub" / "preprocess.json"
    preprocess.save(str(path), fitted)
    assert preprocess.load(str(path)) == fitted
    state = json.loads(path.read_text())
    assert state == fitted.to_dict() and list(state) == sorted(state)
    assert set(state["scaler"]) == {"mean", "scale", "var", "n_samples_seen"}
    assert (state["classes"], state["class_counts"], state["rows"]) == (
        ["c1", "c2", "c3"], [20, 8, 12], ROWS)


def test_load_missing_file(tmp_path):
    path = tmp_path / "none.json"
    with pytest.raises(PipelineError, match=re.escape(f"{path}: file not found")):
        preprocess.load(str(path))


# --- tables: numbers, categories and missing cells --------------------------------------------

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


def _fit_table(table_splits, missing="median", handle_unknown="ignore", inputs=INPUTS):
    train, _, labels = table_splits
    return preprocess.fit(train, labels, inputs, rows=80, categorical=CATEGORICAL,
                          missing=missing, handle_unknown=handle_unknown, source="train.csv")


def _sklearn(train, missing):
    return ColumnTransformer([
        ("n", make_pipeline(SimpleImputer(strategy=missing), StandardScaler()), ["size", "depth"]),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"),
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
         list(CATEGORICAL))], sparse_threshold=0.0, verbose_feature_names_out=False).fit(train)


@pytest.mark.parametrize("missing", ["mean", "median", "most_frequent"])
def test_a_table_is_scikit_learns_column_transformer_to_the_bit(table_splits, missing):
    train, test, _ = table_splits
    unseen = _table(5, 2, islands=("Atlantis",))  # handle_unknown=ignore: all zeros
    state, reference = _fit_table(table_splits, missing), _sklearn(train, missing)
    assert state.features == tuple(reference.get_feature_names_out())
    assert state.encoder.categories == {"island": ("Biscoe", "Dream", "Torgersen"),
                                        "year": ("2007", "2008")}
    assert state.imputer.fill == dict(zip(INPUTS, np.concatenate(
        [reference.named_transformers_[name][0].statistics_ for name in "nc"]).tolist()))
    for loaded in (state, _json_round_trip(state)):
        assert loaded == state
        for split in (train, test, unseen):
            assert loaded.transform(split).tobytes() == reference.transform(split).tobytes()


def test_a_row_is_the_same_bytes_alone_or_in_a_table(table_splits):
    state, test = _fit_table(table_splits), table_splits[1]
    whole = state.transform(test)
    for row in range(len(test)):
        assert state.transform(test.iloc[[row]]).tobytes() == whole[row].tobytes()


def test_transforming_warns_nothing(table_splits, fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _json_round_trip(_fit_table(table_splits)).transform(table_splits[1])
        fitted.transform(np.eye(2))


def test_an_unknown_category_is_refused_with_error(table_splits):
    with pytest.raises(PipelineError, match=re.escape(
            "column 'island' row 2: category 'Atlantis' was not in the train split (Biscoe, "
            "Dream, Torgersen); data.handle_unknown=error refuses it (ignore: all zeros)")):
        _fit_table(table_splits, handle_unknown="error").transform(_table(5, 2, ("Atlantis",)))


@pytest.mark.parametrize("missing", ["error", "drop"])
def test_a_state_that_imputes_nothing_refuses_a_missing_cell(table_splits, missing):
    complete = table_splits[0].dropna().reset_index(drop=True)
    labels = np.array(["a", "b"])[np.arange(len(complete)) % 2]
    state = preprocess.fit(complete, labels, INPUTS, rows=len(complete),
                           categorical=CATEGORICAL, missing=missing)
    assert state.imputer.fill == {}
    with pytest.raises(PipelineError, match=re.escape(
            "in.csv row 3 'size' is missing; a missing value needs a model trained with ")):
        state.transform(table_splits[0], lambda row, name: f"in.csv row {row + 2} '{name}'")
    with pytest.raises(PipelineError, match=re.escape(
            "train.csv: column 'size' row 3 is missing; a missing value needs a model trained")):
        _fit_table(table_splits, missing)


def test_a_column_empty_in_train_cannot_be_imputed(table_splits):
    train = table_splits[0].assign(depth=np.nan)
    with pytest.raises(PipelineError, match=re.escape(
            "train.csv: column 'depth' has no value in the train split; data.missing=mean has "
            "nothing to impute it from")):
        preprocess.fit(train, table_splits[2], INPUTS, rows=60, categorical=CATEGORICAL,
                       missing="mean", source="train.csv")


def test_encoded_names_that_clash_are_refused(table_splits):
    train = table_splits[0].assign(island_Dream=1.0)
    with pytest.raises(PipelineError, match=re.escape(
            "train.csv: encoded feature names clash (island_Dream)")):
        preprocess.fit(train, table_splits[2], ("island_Dream", *INPUTS), rows=60,
                       categorical=CATEGORICAL, missing="mean", source="train.csv")


def test_all_categorical_inputs_need_no_scaler(table_splits):
    state = _fit_table(table_splits, "most_frequent", inputs=CATEGORICAL)
    assert state.scaler.mean == () and state.numeric == () and len(state.features) == 5
    assert _json_round_trip(state).transform(table_splits[1]).shape == (20, 5)


def test_numbers_declared_categorical_are_their_text():
    values = pd.Series([2007, np.nan, 2008], dtype=object)
    assert preprocess.as_text(values).tolist()[::2] == ["2007", "2008"]
    assert pd.isna(preprocess.as_text(values)[1])


def test_an_all_numeric_table_fits_as_the_array_does(splits, fitted):
    X_train, labels_train, X_test, _ = splits
    frame = pd.read_csv(io.StringIO(pd.DataFrame(X_train, columns=FEATURES).to_csv(index=False)))
    state = preprocess.fit(frame, labels_train, FEATURES, rows=ROWS)
    np.testing.assert_allclose(state.scaler.mean, fitted.scaler.mean, rtol=1e-15)
    assert state.features == state.inputs == FEATURES and state.classes == fitted.classes
    np.testing.assert_allclose(state.transform(X_test), fitted.transform(X_test), rtol=1e-14)


# --- a state that does not load ---------------------------------------------------------------

DROP = object()


def _set(*keys):
    def change(state, value):
        for key in keys[:-1]:
            state = state[key]
        if value is DROP:
            del state[keys[-1]]
        else:
            state[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, value", [
    (_set("scaler"), DROP), (_set("classes"), DROP), (_set("scaler", "var"), DROP),
    (_set("rows"), DROP), (_set("imputer", "year"), DROP), (_set("scaler"), [1, 2]),
    (_set("scaler", "mean"), ["x", 1.0]), (_set("scaler", "n_samples_seen"), "many"),
    (_set("scaler", "scale"), None), (_set("class_counts"), [1, "two", 3]),
    (_set("rows"), "many"), (_set("missing"), "impute"), (_set("imputer"), {}),
    (_set("encoder", "handle_unknown"), "warn"), (_set("imputer", "size"), float("nan")),
    (_set("imputer", "size"), "big"), (_set("imputer", "island"), 3),
    (_set("encoder", "categories", "island"), ["Biscoe", "Biscoe", "Dream"]),
    (_set("encoder", "categories", "island"), [1, 2, 3]),
    (_set("encoder", "categories", "island"), ["Biscoe", "Dream", "Torgersen", "Atlantis"]),
    (_set("encoder", "categories", "colour"), ["red"]),
    (_set("scaler", "mean"), [0.0]), (_set("scaler", "var"), [1.0, 1.0, 1.0]),
    (_set("features"), ["size"]), (_set("class_counts"), [1, 2]), (_set("classes"), []),
])
def test_a_malformed_state_is_refused_naming_its_source(table_splits, change, value):
    state = copy.deepcopy(_fit_table(table_splits).to_dict())
    change(state, value)
    with pytest.raises(PipelineError, match=re.escape("s.json: malformed scaler/encoder state")):
        Preprocessor.from_dict(state, source="s.json")


@pytest.mark.parametrize("state", [None, [1, 2], "text"])
def test_a_state_that_is_no_mapping_is_refused(state):
    with pytest.raises(PipelineError, match="^preprocess state: malformed scaler/encoder state"):
        Preprocessor.from_dict(state)


# --- the processed splits a model trains on ---------------------------------------------------

def _write_split(path, X, y):
    files.write_npz(str(path), {"X": X, "y": y})
    return str(path)


def test_load_train_data(tmp_path, fitted):
    train = _write_split(tmp_path / "train.npz", np.ones((4, 2)), np.array([0, 1, 0, 1]))
    val = _write_split(tmp_path / "val.npz", np.zeros((2, 2)), np.array([1, 0]))
    data = training.load_train_data(train, val, fitted)
    assert data.X_train.shape == (4, 2) and data.X_val.shape == (2, 2)
    assert data.y_train.tolist() == [0, 1, 0, 1] and data.y_val.tolist() == [1, 0]


@pytest.mark.parametrize("bad", ["train", "val"])
def test_load_train_data_feature_count_mismatch(tmp_path, fitted, bad):
    paths = {}
    for name in ("train", "val"):
        X = np.zeros((3, 3 if name == bad else 2))
        paths[name] = _write_split(tmp_path / f"{name}.npz", X, np.array([1, 0, 2]))
    with pytest.raises(PipelineError, match=re.escape(
            f"{paths[bad]}: has 3 features, the scaler state has 2; re-run the data stages")):
        training.load_train_data(paths["train"], paths["val"], fitted)
