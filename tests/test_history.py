"""nnpipe.history: per-epoch records, the lesson's progress line, divergence checks."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nnpipe import history

from nnpipe.core import files
from nnpipe.core.errors import PipelineError
from nnpipe.history import COLUMNS, History, TrainData


@pytest.fixture
def hist() -> History:
    h = History()
    h.add(0, 1.0986, 0.3333333333333333, 1.1, 0.30)
    h.add(10, np.float64(0.6612), np.float32(0.598), 0.7049, 0.55)
    return h


def test_add_stores_plain_python_numbers(hist):
    row = hist.rows[1]
    assert row[0] == 10 and type(row[0]) is int
    assert all(type(v) is float for v in row[1:])
    assert row[1] == 0.6612


def test_to_csv_header_and_rows(hist):
    text = hist.to_csv()
    lines = text.split("\n")
    assert lines[0] == "epoch,train_loss,train_acc,val_loss,val_acc"
    assert lines[1] == "0,1.0986,0.3333333333333333,1.1,0.3"
    assert lines[2].startswith("10,0.6612,")
    assert text.endswith("\n") and lines[3] == "" and len(lines) == 4


def test_to_csv_floats_round_trip_exactly(hist):
    for row, line in zip(hist.rows, hist.to_csv().splitlines()[1:]):
        fields = line.split(",")
        assert int(fields[0]) == row[0]
        assert [float(v) for v in fields[1:]] == list(row[1:])


def test_to_csv_empty_history_is_header_only():
    assert History().to_csv() == ",".join(COLUMNS) + "\n"


def test_line_in_the_lesson_style(hist):
    line = hist.line(1)
    assert line.startswith("Epoch: 10 | loss: 0.66, accuracy: 59.8")
    assert line == "Epoch: 10 | loss: 0.66, accuracy: 59.8 | val_loss: 0.70, val_accuracy: 55.0"
    assert hist.line(-1) == line
    assert hist.line(0).startswith("Epoch: 0 | loss: 1.10, accuracy: 33.3 |")


def test_last_is_a_dict_of_the_final_row(hist):
    assert hist.last() == {"epoch": 10, "train_loss": 0.6612, "train_acc": hist.rows[1][2],
                           "val_loss": 0.7049, "val_acc": 0.55}


def test_histories_do_not_share_rows():
    a, b = History(), History()
    a.add(0, 1.0, 0.5, 1.0, 0.5)
    assert b.rows == []


@pytest.mark.parametrize("loss", [0.0, 1e300, -3.5])
def test_check_finite_accepts_finite(loss):
    history.check_finite(loss, "m", 0)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_check_finite_names_model_epoch_and_loss(loss):
    with pytest.raises(PipelineError, match=re.escape(
            f"torch_mlp: training diverged at epoch 7 (loss={loss}); lower the learning rate "
            "or check the input scale")):
        history.check_finite(loss, "torch_mlp", 7)


def test_check_finite_arrays_names_the_array():
    good = {"W1": np.ones((2, 2)), "b1": np.zeros(2)}
    history.check_finite_arrays(good, "numpy_mlp")
    bad = {"W1": np.ones((2, 2)), "b2": np.array([0.0, np.inf])}
    with pytest.raises(PipelineError, match=re.escape(
            "numpy_mlp: weights b2 are not finite after training; lower the learning rate")):
        history.check_finite_arrays(bad, "numpy_mlp")
    with pytest.raises(PipelineError, match="weights W1 are not finite"):
        history.check_finite_arrays({"W1": np.array([[np.nan]])}, "numpy_mlp")


def test_train_data_defaults_to_no_class_weights():
    data = TrainData(np.zeros((2, 1)), np.zeros(2), np.zeros((1, 1)), np.zeros(1))
    assert data.class_weights is None


def _write_split(path, X, y):
    files.write_npz(str(path), {"X": X, "y": y})
    return str(path)


def test_load_train_data(tmp_path):
    train = _write_split(tmp_path / "train.npz", np.ones((4, 2)), np.array([0, 1, 0, 1]))
    val = _write_split(tmp_path / "val.npz", np.zeros((2, 2)), np.array([1, 0]))
    weights = np.array([0.5, 0.5])
    data = history.load_train_data(train, val, weights, input_dim=2)
    assert data.X_train.shape == (4, 2) and data.X_val.shape == (2, 2)
    np.testing.assert_array_equal(data.y_val, [1, 0])
    assert data.class_weights is weights


def test_load_train_data_feature_count_mismatch(tmp_path):
    train = _write_split(tmp_path / "train.npz", np.ones((4, 2)), np.array([0, 1, 0, 1]))
    val = _write_split(tmp_path / "val.npz", np.zeros((2, 3)), np.array([1, 0]))
    with pytest.raises(PipelineError, match=re.escape(
            f"{val}: has 3 features, the scaler state has 2; re-run scale_encode")):
        history.load_train_data(train, val, np.ones(2), input_dim=2)
