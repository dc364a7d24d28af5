"""nnpipe.history: per-epoch records, the lesson's progress line, divergence checks."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nnpipe.core.errors import PipelineError
from nnpipe.history import COLUMNS, History


@pytest.fixture
def hist() -> History:
    h = History("torch_mlp")
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


NON_FINITE = [float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.float32("inf")]


def _diverged(name: str, epoch: int, loss) -> str:
    return re.escape(f"{name}: training diverged at epoch {epoch} (loss={float(loss)}); lower the "
                     "learning rate or check the input scale")


@pytest.mark.parametrize("loss", [0.0, 1e300, -3.5, np.float32(2.5)])
def test_check_accepts_finite(loss):
    History("m").check(loss, 0)


@pytest.mark.parametrize("loss", NON_FINITE)
def test_check_names_model_epoch_and_loss(loss):
    with pytest.raises(PipelineError, match=_diverged("torch_mlp", 7, loss)) as caught:
        History("torch_mlp").check(loss, 7)
    assert "\n" not in str(caught.value)


def test_the_default_name_is_model():
    with pytest.raises(PipelineError, match=_diverged("model", 0, "nan")):
        History().check(float("nan"), 0)


@pytest.mark.parametrize("column", ["train_loss", "val_loss"])
@pytest.mark.parametrize("loss", NON_FINITE)
def test_add_refuses_a_non_finite_loss_and_keeps_the_rows(hist, column, loss):
    values = {"train_loss": 0.5, "val_loss": 0.6, column: loss}
    before = list(hist.rows)
    with pytest.raises(PipelineError, match=_diverged("torch_mlp", 20, loss)):
        hist.add(20, values["train_loss"], 0.9, values["val_loss"], 0.8)
    assert hist.rows == before  # nothing half-recorded
    assert "nan" not in hist.to_csv() and "inf" not in hist.to_csv()


def test_add_accepts_finite_losses_and_any_accuracy(hist):
    hist.add(20, 1e300, 0.0, -0.0, 1.0)
    assert hist.rows[-1] == (20, 1e300, 0.0, -0.0, 1.0)
