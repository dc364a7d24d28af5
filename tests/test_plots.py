"""nnpipe.plots: figures built with the object-oriented API; files.save_figure writes PNGs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from nnpipe import plots

from nnpipe.core import files

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def three_classes(n=30, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 2)
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    return X, labels


def offsets(ax) -> np.ndarray:
    """The points of the Axes' one scatter plot."""
    (scatter,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return np.asarray(scatter.get_offsets())


# --- subsample --------------------------------------------------------------------------------

def test_subsample_keeps_small_inputs_whole():
    X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    Xs, ys = plots.subsample(X, y, max_points=5)
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)


@pytest.mark.parametrize("max_points", [1, 7, 99])
def test_subsample_caps_keeps_order_and_alignment(max_points):
    X = np.arange(200.0).reshape(100, 2)  # row i is (2i, 2i+1)
    y = np.arange(100)
    Xs, ys = plots.subsample(X, y, max_points)
    assert len(Xs) == len(ys) == max_points
    np.testing.assert_array_equal(Xs[:, 0], 2 * ys)  # rows of X and y stay paired
    assert np.all(np.diff(ys) > 0)  # original order, no repeats


def test_subsample_is_deterministic_and_seeded():
    X, y = np.random.RandomState(0).randn(500, 2), np.arange(500)
    first, second = plots.subsample(X, y, 50), plots.subsample(X, y, 50)
    np.testing.assert_array_equal(first[1], second[1])
    other = plots.subsample(X, y, 50, seed=1)
    assert not np.array_equal(first[1], other[1])


def test_subsample_does_not_modify_inputs():
    X, y = np.random.RandomState(0).randn(50, 2), np.arange(50)
    X0, y0 = X.copy(), y.copy()
    plots.subsample(X, y, 10)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# --- figures ----------------------------------------------------------------------------------

def test_data_by_class_scatter_is_capped():
    X, labels = three_classes(60)
    fig = plots.data_by_class(X, labels, ["X1", "X2"], max_points=25)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(offsets(ax)) == 25
    assert ax.get_xlabel() == "X1" and ax.get_ylabel() == "X2"
    assert "60 rows" in ax.get_title() and "a, b, c" in ax.get_title()


def test_data_by_class_all_points_when_few():
    X, labels = three_classes(12)
    fig = plots.data_by_class(X, labels, ["u", "v"], max_points=100)
    np.testing.assert_allclose(offsets(fig.axes[0]), X)


def test_activations_has_three_panels():
    fig = plots.activations()
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["Sigmoid activation", "Tanh activation",
                                                   "ReLU activation"]
    x, relu = fig.axes[2].lines[0].get_data()
    np.testing.assert_allclose(relu, np.maximum(x, 0))


def test_decision_boundary_with_a_simple_proba_function():
    calls = []

    def proba(X):  # class 0 left of x = 0, class 1 right of it
        calls.append(X.copy())
        right = (X[:, 0] > 0).astype(float)
        return np.c_[1 - right, right]

    rng = np.random.RandomState(0)
    train = (rng.randn(40, 2), rng.randint(0, 2, 40))
    test = (rng.randn(10, 2), rng.randint(0, 2, 10))
    fig = plots.decision_boundary(proba, train, test, "toy", grid_size=11, max_points=30)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["toy: Train", "toy: Test"]
    assert len(calls) == 2 and all(c.shape == (121, 2) for c in calls)
    # the grid covers each panel's data with a 0.1 margin
    grid = calls[0]
    np.testing.assert_allclose(grid.min(axis=0), train[0].min(axis=0) - 0.1)
    np.testing.assert_allclose(grid.max(axis=0), train[0].max(axis=0) + 0.1)
    assert len(offsets(fig.axes[0])) == 30  # capped at max_points
    assert len(offsets(fig.axes[1])) == 10
    assert fig.axes[0].get_xlim() == pytest.approx((grid[:, 0].min(), grid[:, 0].max()))


def test_training_curves_plot_each_column():
    curves = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [1.0, 0.5, 0.25],
                           "train_acc": [0.3, 0.6, 0.9], "val_loss": [1.1, 0.7, 0.4],
                           "val_acc": [0.2, 0.5, 0.8], "kept": [0, 1, 0]})
    fig = plots.training_curves(curves, "net")
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "net: loss" and acc_ax.get_title() == "net: accuracy"
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [1.1, 0.7, 0.4])
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [0.2, 0.5, 0.8])
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == \
        ["train", "val", "kept: epoch 1"]
    for ax in (loss_ax, acc_ax):  # the kept epoch's line
        assert list(ax.lines[2].get_xdata()) == [1, 1]


def test_confusion_matrix_writes_each_count():
    fig = plots.confusion_matrix([[5, 1], [0, 7]], ["x", "y"], "net")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "5", "7"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "actual"
    np.testing.assert_array_equal(ax.images[0].get_array(), [[5, 1], [0, 7]])


def test_data_figure_draws_the_first_two_numeric_features_of_complete_rows():
    X = np.array([[0.1, 2007.0], [0.2, 2008.0], [np.nan, 2007.0], [0.4, 2008.0]])
    fig, note = plots.data_figure(X, np.array(["p", "q", "p", "q"]), ["a", "year"], 100)
    assert note is None
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "year")
    np.testing.assert_allclose(offsets(ax), [[0.1, 2007.0], [0.2, 2008.0], [0.4, 2008.0]])
    assert "3 rows" in ax.get_title()


@pytest.mark.parametrize("numeric, says", [([], "data.features has 0"),
                                           (["a"], "data.features has 1 (a)")])
def test_data_figure_with_fewer_than_two_numeric_features_says_why(numeric, says):
    fig, note = plots.data_figure(np.zeros((2, len(numeric))), np.array(["p", "q"]), numeric, 100)
    assert note == f"data figure skipped: it needs 2 numeric features, {says}"
    assert [t.get_text() for t in fig.texts] == [note]


@pytest.mark.parametrize("numeric, categorical, note", [
    (["x", "y"], [], None),
    (["x", "y", "z"], [], "3 numeric and 0 categorical"),
    (["x", "y"], ["k"], "2 numeric and 1 categorical"),
    (["x"], ["k"], "1 numeric and 1 categorical"),
])
def test_boundary_note_needs_exactly_two_numeric_features_and_no_categorical(numeric,
                                                                             categorical, note):
    said = plots.boundary_note("net", numeric, categorical)
    assert said == (note and "decision boundary not drawn: it needs exactly 2 numeric features "
                    f"and no categorical one, net has {note}")


def test_class_curves_draw_each_class_against_the_rest_with_its_auc():
    y = np.array([0, 0, 1, 1, 0, 1])  # class "c" has no test row: no curve
    scores = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.2, 0.8, 0.0],
                       [0.45, 0.55, 0.0], [0.5, 0.5, 0.0]])
    fig = plots.class_curves(y, scores, ["a", "b", "c"], "net", "why not the boundary")
    roc, pr = fig.axes
    assert roc.get_title() == "net: test ROC, each class against the rest"
    assert pr.get_title() == "net: test precision-recall, each class against the rest"
    # each class ranks 8 of its 9 (row of it, row of the rest) pairs right: AUC 8/9; its
    # third row comes after one of the rest: AP (1 + 1 + 3/4) / 3
    assert [t.get_text() for t in roc.get_legend().get_texts()] == \
        ["chance", "a (AUC 0.889)", "b (AUC 0.889)"]
    fpr, tpr = roc.lines[1].get_data()
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert [t.get_text() for t in pr.get_legend().get_texts()] == ["a (AP 0.917)", "b (AP 0.917)"]
    assert [t.get_text() for t in fig.texts] == ["why not the boundary"]


def test_placeholder_says_why():
    fig = plots.placeholder("decision boundary skipped: 3 features")
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.texts] == ["decision boundary skipped: 3 features"]


# --- saving -----------------------------------------------------------------------------------

def test_save_figure_writes_a_valid_png(tmp_path):
    X, labels = three_classes()
    path = tmp_path / "sub" / "data.png"
    files.save_figure(str(path), plots.data_by_class(X, labels, ["X1", "X2"], 100))
    data = path.read_bytes()
    assert png_size(data) == (600, 500)  # 6 x 5 inches at 100 dpi
    assert data.endswith(b"IEND\xaeB`\x82")
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.png"]  # no temp file left
    assert b"Software" not in data  # no matplotlib version stamp


def test_save_figure_is_byte_identical(tmp_path):
    for name in ("a.png", "b.png"):
        files.save_figure(str(tmp_path / name), plots.activations())
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_save_figure_dpi(tmp_path):
    files.save_figure(str(tmp_path / "p.png"), plots.placeholder("note"), dpi=50)
    assert png_size((tmp_path / "p.png").read_bytes()) == (300, 75)
