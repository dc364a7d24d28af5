"""nnpipe.numpy_mlp: hand-written backprop checked against finite differences and torch autograd."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nnpipe import numpy_mlp
from nnpipe.core.errors import PipelineError
from nnpipe.architecture import ACTIVATIONS
from nnpipe.data import make_spiral
from nnpipe.numpy_mlp import NumpyMLP
from nnpipe.preprocess import TrainData

D, C, N = 3, 4, 7
CLASS_WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0])
DEPTHS = {"depth1": (5,), "depth2": (5, 4), "depth3": (6, 5, 4)}  # hidden_dims


@pytest.fixture(params=list(DEPTHS.values()), ids=list(DEPTHS))
def net(request):
    """Random params for ``[D] + hidden_dims + [C]``, a batch X (N, D) and labels y (N,)."""
    rng = np.random.RandomState(0)
    dims = (D, *request.param, C)
    params = {}
    for i in range(1, len(dims)):
        params[f"W{i}"] = rng.randn(dims[i - 1], dims[i])
        params[f"b{i}"] = rng.randn(dims[i]) * 0.5
    X = rng.randn(N, D)
    y = np.array([0, 1, 2, 3, 1, 0, 2])
    return params, X, y


def _numeric_grad(f, array, h=1e-6):
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        old = array[index]
        array[index] = old + h
        plus = f()
        array[index] = old - h
        minus = f()
        array[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad


def _rel_error(a, b):
    """cs231n's relative error, over the whole array (entries near 0 are noise-dominated)."""
    return np.linalg.norm(a - b) / max(1e-12, np.linalg.norm(a) + np.linalg.norm(b))


# --- gradients --------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("weights", [None, CLASS_WEIGHTS], ids=["plain", "class_weights"])
def test_gradient_check_every_parameter(net, weights, activation):
    params, X, y = net
    model = NumpyMLP({k: v.copy() for k, v in params.items()}, activation)
    grads = model.loss(X, y, weights).grads
    assert set(grads) == set(params)
    for name in params:
        numeric = _numeric_grad(lambda: model.loss(X, y, weights).loss, model.params[name])
        assert grads[name].shape == model.params[name].shape
        assert np.abs(grads[name]).max() > 1e-6, name  # not trivially zero
        assert _rel_error(grads[name], numeric) < 1e-6, name
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_layer_gradients_by_finite_differences():
    rng = np.random.RandomState(1)
    x, w, b = rng.randn(4, 3), rng.randn(3, 2), rng.randn(2)
    dout = rng.randn(4, 2)
    out, cache = numpy_mlp.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b)
    dx, dw, db = numpy_mlp.affine_backward(dout, cache)
    for array, analytic in ((x, dx), (w, dw), (b, db)):
        numeric = _numeric_grad(lambda: float((numpy_mlp.affine_forward(x, w, b)[0] * dout).sum()),
                                array)
        assert _rel_error(analytic, numeric) < 1e-7

    z = rng.randn(5, 3)
    out, cache = numpy_mlp.relu_forward(z)
    np.testing.assert_array_equal(out, np.maximum(z, 0))
    dz = numpy_mlp.relu_backward(np.ones_like(z), cache)
    np.testing.assert_array_equal(dz, (z > 0).astype(float))


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        NumpyMLP({"W1": np.ones((2, 3)), "b1": np.zeros(3)}, "tanh")


def test_identity_activation_is_one_affine_map(net):
    """No activation between layers: the network is X @ W + b for the product of its layers."""
    params, X, _ = net
    identity, relu = NumpyMLP(params, "identity"), NumpyMLP(params, "relu")
    W, b = params["W1"], params["b1"]
    for i in range(2, len(params) // 2 + 1):
        W, b = W @ params[f"W{i}"], b @ params[f"W{i}"] + params[f"b{i}"]
    np.testing.assert_allclose(identity.scores(X), X @ W + b, rtol=1e-10, atol=1e-12)
    assert not np.allclose(relu.scores(X), X @ W + b)  # relu is not (some units are < 0)
    assert NumpyMLP(params).activation == "relu"  # the lesson's MLP by default


def test_loss_does_not_mutate_params_or_inputs(net):
    params, X, y = net
    copies = {k: v.copy() for k, v in params.items()}
    X_copy, y_copy = X.copy(), y.copy()
    NumpyMLP(params).loss(X, y, CLASS_WEIGHTS)
    for name in params:
        np.testing.assert_array_equal(params[name], copies[name])
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)


# --- softmax cross-entropy --------------------------------------------------------------------

def test_softmax_cross_entropy_huge_logits_is_stable_and_pure():
    scores = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4], [-1e4, -1e4, -1e4]])
    y = np.array([0, 1, 2])
    before = scores.copy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dscores = numpy_mlp.softmax_cross_entropy(scores, y)
    np.testing.assert_array_equal(scores, before)
    assert np.isfinite(loss) and np.all(np.isfinite(dscores))
    assert loss == pytest.approx((0.0 + np.log(2) + np.log(3)) / 3, rel=1e-12)
    np.testing.assert_allclose(dscores.sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(dscores[1], [0, -0.5 / 3, 0.5 / 3], atol=1e-15)


def test_softmax_cross_entropy_matches_naive_formula():
    rng = np.random.RandomState(2)
    scores, y = rng.randn(6, 4), rng.randint(0, 4, size=6)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    loss, dscores = numpy_mlp.softmax_cross_entropy(scores, y)
    assert loss == pytest.approx(-np.log(probs[np.arange(6), y]).mean(), rel=1e-12)
    expected = probs.copy()
    expected[np.arange(6), y] -= 1
    np.testing.assert_allclose(dscores, expected / 6, rtol=1e-12, atol=1e-15)


def test_weighted_loss_is_weighted_mean():
    rng = np.random.RandomState(3)
    scores, y = rng.randn(5, 4), np.array([0, 1, 1, 3, 2])
    unweighted, _ = numpy_mlp.softmax_cross_entropy(scores, y)
    log_probs = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    w = CLASS_WEIGHTS[y]
    expected = -(w * log_probs[np.arange(5), y]).sum() / w.sum()
    loss, _ = numpy_mlp.softmax_cross_entropy(scores, y, CLASS_WEIGHTS)
    assert loss == pytest.approx(expected, rel=1e-12)
    assert loss != pytest.approx(unweighted, rel=1e-6)


# --- torch autograd as the oracle -------------------------------------------------------------

def _torch_oracle(params, activation, X, y, weights):
    """Loss, gradients (float64 arrays keyed like ``params``) and logits by torch autograd."""
    import torch
    import torch.nn.functional as F

    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    layers = len(params) // 2
    scores = torch.tensor(X)
    for i in range(1, layers + 1):
        scores = scores @ tp[f"W{i}"] + tp[f"b{i}"]
        if i < layers and activation == "relu":
            scores = torch.relu(scores)
    target = torch.tensor(y, dtype=torch.long)
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float64)
    loss = F.cross_entropy(scores, target, weight=weight)
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in tp.items()}, scores.detach().numpy()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("weights", [None, CLASS_WEIGHTS], ids=["plain", "class_weights"])
def test_parity_with_torch_autograd(net, weights, activation):
    params, X, y = net
    model = NumpyMLP({k: v.copy() for k, v in params.items()}, activation)
    loss, grads, _ = model.loss(X, y, weights)
    torch_loss, torch_grads, torch_scores = _torch_oracle(params, activation, X, y, weights)
    assert abs(loss - torch_loss) < 1e-10
    for name in params:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.scores(X), torch_scores, rtol=1e-12)


# --- init and training ------------------------------------------------------------------------

def test_init_shapes_and_scale():
    model = NumpyMLP.init((2, 100, 3), 0.01, np.random.RandomState(0))
    assert {k: v.shape for k, v in model.params.items()} == \
        {"W1": (2, 100), "b1": (100,), "W2": (100, 3), "b2": (3,)}
    assert np.all(model.params["b1"] == 0) and np.all(model.params["b2"] == 0)
    assert 0.005 < model.params["W1"].std() < 0.015
    again = NumpyMLP.init((2, 100, 3), 0.01, np.random.RandomState(0))
    np.testing.assert_array_equal(model.params["W2"], again.params["W2"])
    deep = NumpyMLP.init((2, 64, 32, 3), 0.01, np.random.RandomState(0))
    assert {k: v.shape for k, v in deep.params.items()} == \
        {"W1": (2, 64), "b1": (64,), "W2": (64, 32), "b2": (32,), "W3": (32, 3), "b3": (3,)}
    assert all(np.all(deep.params[f"b{i}"] == 0) for i in (1, 2, 3))


@pytest.fixture(scope="module")
def spiral_data() -> TrainData:
    X, labels = make_spiral(40, ("c1", "c3", "c2"), 0.2, 1234)
    y = np.searchsorted(np.array(["c1", "c2", "c3"]), labels)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(y))
    train, val = order[:90], order[90:]
    return TrainData(X[train], y[train], X[val], y[val], None)


def test_training_reduces_loss_on_spiral(spiral_data):
    model = NumpyMLP.init((2, 32, 3), 0.01, np.random.RandomState(1234))
    X_before = spiral_data.X_train.copy()
    history = numpy_mlp.train(model, spiral_data, lr=1.0, epochs=300, batch_size=None,
                              rng=np.random.RandomState(0))
    assert [row[0] for row in history.rows] == list(range(300))
    first, last = history.rows[0], history.rows[-1]
    assert first[1] == pytest.approx(np.log(3), abs=0.01)  # tiny init: uniform predictions
    assert last[1] < 0.5 * first[1]
    assert last[2] > 0.8  # train accuracy, in [0, 1]
    assert last[3] < first[3]  # validation loss went down too
    np.testing.assert_array_equal(spiral_data.X_train, X_before)


def test_two_hidden_layers_learn_the_spiral(spiral_data):
    model = NumpyMLP.init((2, 32, 16, 3), 0.1, np.random.RandomState(1234))
    history = numpy_mlp.train(model, spiral_data, lr=0.5, epochs=400, batch_size=None,
                              rng=np.random.RandomState(0))
    assert history.rows[-1][2] > 0.9, history.rows[-1]  # train accuracy
    assert history.rows[-1][1] < 0.5 * history.rows[0][1]


@pytest.mark.parametrize("batch_size", [None, 32], ids=["full-batch", "minibatch"])
def test_identity_training_follows_torch_autograd_gradients(spiral_data, batch_size):
    """The linear model (activation identity) trained by the NumPy backend: every step is
    gradient descent on torch autograd's gradients of the same batch."""
    model = NumpyMLP.init((2, 8, 3), 0.1, np.random.RandomState(5), "identity")
    manual = {k: v.copy() for k, v in model.params.items()}
    weights = np.array([1.0, 2.0, 0.5])
    data = spiral_data._replace(class_weights=weights)
    history = numpy_mlp.train(model, data, lr=0.5, epochs=4, batch_size=batch_size,
                              rng=np.random.RandomState(0))
    rng = np.random.RandomState(0)
    for epoch in range(4):
        for rows in numpy_mlp._batches(len(data.y_train), batch_size, rng):
            loss, grads, _ = _torch_oracle(manual, "identity", data.X_train[rows],
                                           data.y_train[rows], weights)
            manual = {k: v - 0.5 * grads[k] for k, v in manual.items()}
        if batch_size is None:
            assert history.rows[epoch][1] == pytest.approx(loss, rel=1e-12)
    for name in manual:
        np.testing.assert_allclose(model.params[name], manual[name], rtol=1e-10, atol=1e-12)
    assert history.rows[-1][1] < history.rows[0][1]  # it learns


def test_identity_model_learns_only_a_linear_boundary(spiral_data):
    """On the spiral, the linear model stays far below the MLP (the lesson's point)."""
    runs = {}
    for activation in ACTIVATIONS:
        model = NumpyMLP.init((2, 32, 3), 0.1, np.random.RandomState(1234), activation)
        runs[activation] = numpy_mlp.train(model, spiral_data, lr=0.5, epochs=300,
                                           batch_size=None, rng=np.random.RandomState(0))
    assert runs["identity"].rows[-1][2] < 0.7 < 0.9 < runs["relu"].rows[-1][2]


def test_full_batch_training_matches_manual_gradient_descent(spiral_data):
    model = NumpyMLP.init((2, 8, 3), 0.1, np.random.RandomState(5))
    manual = {k: v.copy() for k, v in model.params.items()}
    history = numpy_mlp.train(model, spiral_data, lr=0.5, epochs=3, batch_size=None,
                              rng=np.random.RandomState(0))
    for epoch in range(3):
        loss, grads, _ = NumpyMLP(manual).loss(spiral_data.X_train, spiral_data.y_train)
        assert history.rows[epoch][1] == pytest.approx(loss, rel=1e-12)
        for name in manual:
            manual[name] = manual[name] - 0.5 * grads[name]
    for name in manual:
        np.testing.assert_allclose(model.params[name], manual[name], rtol=1e-12)


def _minibatch_run(data, seed):
    model = NumpyMLP.init((2, 16, 3), 0.1, np.random.RandomState(9))
    history = numpy_mlp.train(model, data, lr=0.5, epochs=5, batch_size=16,
                              rng=np.random.RandomState(seed))
    return model, history


def test_minibatch_training_is_deterministic_for_a_random_state(spiral_data):
    model_a, hist_a = _minibatch_run(spiral_data, 0)
    model_b, hist_b = _minibatch_run(spiral_data, 0)
    model_c, hist_c = _minibatch_run(spiral_data, 1)
    assert hist_a.rows == hist_b.rows
    for name in model_a.params:
        np.testing.assert_array_equal(model_a.params[name], model_b.params[name])
    assert hist_a.rows != hist_c.rows
    assert not np.array_equal(model_a.params["W1"], model_c.params["W1"])


def test_minibatches_cover_every_row_once():
    batches = numpy_mlp._batches(10, 4, np.random.RandomState(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert len(numpy_mlp._batches(10, None, np.random.RandomState(0))) == 1
    assert len(numpy_mlp._batches(10, 10, np.random.RandomState(0))) == 1


def _diverging(spiral_data):
    return NumpyMLP.init((2, 10, 3), 1.0, np.random.RandomState(0)), \
        TrainData(spiral_data.X_train, spiral_data.y_train, spiral_data.X_train,
                  spiral_data.y_train, None)


def test_huge_learning_rate_raises_naming_model_and_epoch(spiral_data):
    model, data = _diverging(spiral_data)
    with np.errstate(all="ignore"), pytest.raises(PipelineError) as info:
        numpy_mlp.train(model, data, lr=1e6, epochs=200, batch_size=None,
                        rng=np.random.RandomState(0), name="my_numpy_model")
    match = re.fullmatch(r"my_numpy_model: training diverged at epoch (\d+) \(loss=(nan|inf)\); "
                         r"lower the learning rate or check the input scale", str(info.value))
    assert match, str(info.value)
    assert 0 < int(match.group(1)) < 200


def test_train_never_returns_non_finite_history(spiral_data):
    # Validation = train data, full batch: val loss after epoch E-1 equals train loss of epoch
    # E, so stopping at the epoch where the train loss diverges leaves a NaN validation loss.
    model, data = _diverging(spiral_data)
    with np.errstate(all="ignore"), pytest.raises(PipelineError) as info:
        numpy_mlp.train(model, data, lr=1e6, epochs=200, batch_size=None,
                        rng=np.random.RandomState(0))
    diverged_at = int(re.search(r"epoch (\d+)", str(info.value)).group(1))
    model, data = _diverging(spiral_data)
    with np.errstate(all="ignore"):
        try:
            history = numpy_mlp.train(model, data, lr=1e6, epochs=diverged_at, batch_size=None,
                                      rng=np.random.RandomState(0))
        except PipelineError:
            return
    assert np.all(np.isfinite(np.array(history.rows))), history.rows[-1]
