"""nnpipe.evaluation: scikit-learn figures checked against cases computed by hand."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnpipe import evaluation as metrics

CLASSES = ["c1", "c2", "c3"]


@pytest.fixture
def hand_case():
    # actual:    0 0 1 1 2 2
    # predicted: 0 1 1 1 2 0
    return metrics.evaluate(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]), CLASSES)


@pytest.mark.parametrize("seed, classes, rows, skew", [
    (0, 3, 1000, 0.9), (1, 2, 7, 0.5), (2, 5, 3001, 0.99), (3, 4, 500, 0.0), (4, 3, 2, 1.0)])
def test_figures_are_scikit_learns_on_every_row_to_the_bit(seed, classes, rows, skew):
    """evaluate() hands scikit-learn the (actual, predicted) pair counts; the figures must be
    what it computes from the rows themselves, bit for bit (a class never predicted, and one
    never present, included)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes - 1, rows)  # the last class never occurs
    pred = np.where(rng.random(rows) < skew, y, rng.integers(0, classes, rows))
    pred[pred == 1] = 0 if classes > 2 else 1  # class 1 never predicted (with 3+ classes)
    names = [f"k{i}" for i in range(classes)]
    got, labels = metrics.evaluate(y, pred, names), np.arange(classes)
    weighted = precision_recall_fscore_support(y, pred, labels=labels, average="weighted",
                                               zero_division=0)
    assert got.overall == {"accuracy": float(accuracy_score(y, pred)),
                           **dict(zip(("precision", "recall", "f1"), map(float, weighted[:3])))}
    p, r, f, support = precision_recall_fscore_support(y, pred, labels=labels, average=None,
                                                       zero_division=0)
    assert got.per_class == {name: {"precision": float(p[i]), "recall": float(r[i]),
                                    "f1": float(f[i]), "support": int(support[i])}
                             for i, name in enumerate(names)}
    assert got.confusion == confusion_matrix(y, pred, labels=labels).tolist()


def test_accuracy_by_hand(hand_case):
    assert hand_case.overall["accuracy"] == pytest.approx(4 / 6)


def test_confusion_rows_are_actual_columns_predicted(hand_case):
    assert hand_case.confusion == [[1, 1, 0],
                                   [0, 2, 0],
                                   [1, 0, 1]]
    assert all(isinstance(v, int) for row in hand_case.confusion for v in row)


def test_per_class_precision_recall_f1_by_hand(hand_case):
    # c1: predicted at rows 0 and 5, right once -> P 1/2; actual rows 0, 1, found once -> R 1/2
    # c2: predicted at rows 1, 2, 3, right twice -> P 2/3; both actual rows found -> R 1
    # c3: predicted once, right -> P 1; one of two actual rows found -> R 1/2
    expected = {
        "c1": (1 / 2, 1 / 2, 1 / 2),
        "c2": (2 / 3, 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1)),  # 0.8
        "c3": (1.0, 1 / 2, 2 * 1 * (1 / 2) / (1 + 1 / 2)),  # 2/3
    }
    assert list(hand_case.per_class) == CLASSES
    for name, (p, r, f) in expected.items():
        figures = hand_case.per_class[name]
        assert figures["precision"] == pytest.approx(p)
        assert figures["recall"] == pytest.approx(r)
        assert figures["f1"] == pytest.approx(f)
        assert figures["support"] == 2
    assert hand_case.per_class["c2"]["f1"] == pytest.approx(0.8)


def test_weighted_figures_by_hand(hand_case):
    # every class has support 2, so the weighted mean is the plain mean
    assert hand_case.overall["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)  # 13/18
    assert hand_case.overall["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)  # 2/3
    assert hand_case.overall["f1"] == pytest.approx((1 / 2 + 0.8 + 2 / 3) / 3)  # 59/90
    assert hand_case.overall["f1"] == pytest.approx(59 / 90)
    assert set(hand_case.overall) == {"accuracy", "precision", "recall", "f1"}
    assert all(type(v) is float for v in hand_case.overall.values())


def test_weighted_mean_uses_support():
    # actual: 0 0 0 1; predicted: 0 0 1 1
    # c1: P 1, R 2/3, F 0.8 (support 3); c2: P 1/2, R 1, F 2/3 (support 1)
    result = metrics.evaluate(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), ["a", "b"])
    assert result.overall["precision"] == pytest.approx((3 * 1 + 1 * 0.5) / 4)
    assert result.overall["recall"] == pytest.approx((3 * 2 / 3 + 1 * 1) / 4)
    assert result.overall["f1"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)
    assert result.overall["accuracy"] == pytest.approx(3 / 4)


def test_class_never_predicted_has_precision_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.evaluate(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1]), CLASSES)
    assert result.per_class["c3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result.per_class["c2"]["precision"] == pytest.approx(1 / 3)
    assert result.confusion == [[1, 0, 0], [0, 1, 0], [0, 2, 0]]
    # weighted precision: (1*1 + 1*(1/3) + 2*0) / 4
    assert result.overall["precision"] == pytest.approx((1 + 1 / 3) / 4)


def test_class_absent_from_both_gets_zeros_and_a_row():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.evaluate(np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1]), CLASSES)
    assert result.per_class["c3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result.confusion == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_perfect_predictions():
    y = np.array([2, 0, 1, 1, 0])
    result = metrics.evaluate(y, y.copy(), CLASSES)
    assert result.overall == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert np.trace(result.confusion) == 5


def test_inputs_are_not_modified():
    y_true, y_pred = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    metrics.evaluate(y_true, y_pred, CLASSES)
    assert y_true.tolist() == [0, 0, 1, 1, 2, 2] and y_pred.tolist() == [0, 1, 1, 1, 2, 0]


def test_summary_markdown_one_row_per_model_in_order():
    figures = {
        "linear": {"test": {"accuracy": 0.5, "precision": 0.25, "recall": 0.5, "f1": 1 / 3,
                            "accuracy_low": 0.40383, "accuracy_high": 0.59617},
                   "val": {"accuracy": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9}},
        "torch_mlp": {"test": {"accuracy": 0.98765, "precision": 1.0, "recall": 0.0,
                               "f1": 0.123456}},
    }
    text = metrics.summary_markdown(figures)
    assert text == (
        "## Model comparison (test split)\n"
        "\n"
        "| model | accuracy | 95% interval | precision | recall | f1 |\n"
        "|---|---:|:---:|---:|---:|---:|\n"
        "| linear | 0.5000 | [0.4038, 0.5962] | 0.2500 | 0.5000 | 0.3333 |\n"
        "| torch_mlp | 0.9877 |  | 1.0000 | 0.0000 | 0.1235 |\n"
        "\n"
        "95% interval: Wilson score interval of the accuracy over the split's rows.\n")


def test_summary_markdown_other_split():
    figures = {"m": {"val": {"accuracy": 0.75, "precision": 0.5, "recall": 0.25, "f1": 0.125},
                     "test": {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}}}
    lines = metrics.summary_markdown(figures, split="val").splitlines()
    assert lines[0] == "## Model comparison (val split)"
    assert lines[-1] == "| m | 0.7500 |  | 0.5000 | 0.2500 | 0.1250 |"


@pytest.mark.parametrize("correct, rows", [(50, 100), (60, 60), (0, 55), (1, 1), (31, 52)])
def test_accuracy_interval_is_wilsons_by_hand(correct, rows):
    z = 1.959963984540054  # the 97.5% normal quantile
    p = correct / rows
    center = (p + z * z / (2 * rows)) / (1 + z * z / rows)
    half = z / (1 + z * z / rows) * np.sqrt(p * (1 - p) / rows + z * z / (4 * rows * rows))
    interval = metrics.accuracy_interval(correct, rows)
    assert interval == pytest.approx({"accuracy_low": center - half,
                                      "accuracy_high": center + half}, abs=1e-12)
    assert 0 <= interval["accuracy_low"] <= p <= interval["accuracy_high"] <= 1


def test_a_test_split_of_60_rows_is_an_interval_wider_than_a_row_is():
    """One row of 60 is 1.7 points; the interval spans 9 rows."""
    interval = metrics.accuracy_interval(54, 60)
    assert interval["accuracy_high"] - interval["accuracy_low"] > 9 / 60
