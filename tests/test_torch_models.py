"""nnpipe.torch_models: the torch module of every model, its one training loop (fused Adam),
weights out to NumPy and back in from a model directory."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from nnpipe import models, params, preprocess, torch_models, training
from nnpipe.architecture import ACTIVATIONS, ModelParams
from nnpipe.core.errors import PipelineError
from nnpipe.data import make_spiral
from nnpipe.models import ModelSpec
from nnpipe.preprocess import TrainData

BACKENDS = ("numpy", "torch")  # the MLPs; a sklearn model back in torch: tests/test_training.py

D, H, C = 2, 5, 3


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


def spec_of(activation="relu", d=D, h=H, c=C) -> ModelSpec:
    hidden = h if isinstance(h, tuple) else (h,)
    return ModelSpec("m", "torch", activation, d, hidden, c)


def torch_model(activation="relu", d=D, h=H, c=C, seed=0, dropout_p=0.0, init="default"):
    torch.manual_seed(seed)
    spec = spec_of(activation, d, h, c)
    return spec, torch_models.build(spec, dropout_p, init)


def torch_proba(module, X: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return torch.softmax(module(torch.as_tensor(X, dtype=torch.float32)), dim=1).numpy()


def _data(n: int = 30, seed: int = 0) -> TrainData:
    X = np.random.RandomState(seed).randn(n, 2)
    y = np.arange(n) % 3
    return TrainData(X, y, X, y, np.ones(3))


# --- the module -------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, cls", [("identity", torch.nn.Identity),
                                             ("relu", torch.nn.ReLU)])
def test_feed_forward_is_affine_activation_dropout_per_hidden_layer(activation, cls):
    module = torch_models.FeedForward(spec_of(activation, 3, (8, 6), 4), dropout_p=0.25)
    assert [(layer.in_features, layer.out_features) for layer in module.layers] == \
        [(3, 8), (8, 6), (6, 4)]
    assert type(module.activation) is cls
    assert module.dropout.p == 0.25


def test_identity_activation_has_no_relu():
    spec, module = torch_model("identity", d=1, h=1, c=2)
    first, last = module.layers
    with torch.no_grad():
        first.weight.fill_(-1.0)
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        last.bias.zero_()
        scores = module(torch.tensor([[2.0]]))
    torch.testing.assert_close(scores, torch.tensor([[-2.0, 2.0]]))  # relu would give (0, 0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("h, dropout_p", [(7, 0.0), ((8, 6, 5), 0.5)], ids=["one", "deep"])
def test_export_weights_match_torch_forward(activation, h, dropout_p):
    spec, module = torch_model(activation, d=3, h=h, c=4, dropout_p=dropout_p)
    weights = torch_models.export_weights(module)
    widths = [3, *(h if isinstance(h, tuple) else (h,)), 4]
    assert {k: v.shape for k, v in weights.items()} == {
        **{f"W{i}": (a, b) for i, (a, b) in enumerate(zip(widths, widths[1:]), 1)},
        **{f"b{i}": (b,) for i, b in enumerate(widths[1:], 1)}}
    assert all(v.dtype == np.float64 for v in weights.values())
    X = np.random.RandomState(3).randn(40, 3)
    np.testing.assert_allclose(models.predict_proba(spec, weights, X), torch_proba(module, X),
                               atol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dropout_is_off_in_eval_mode(activation):
    spec, module = torch_model(activation, d=2, h=50, c=3, dropout_p=0.5)
    X = np.random.RandomState(4).randn(20, 2)
    np.testing.assert_allclose(torch_proba(module, X),
                               models.predict_proba(spec, torch_models.export_weights(module), X),
                               atol=1e-6)
    module.train()
    with torch.no_grad():
        noisy = torch.softmax(module(torch.as_tensor(X, dtype=torch.float32)), dim=1).numpy()
    assert not np.allclose(noisy, torch_proba(module, X), atol=1e-6)


# --- init -------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, gain", [("relu", np.sqrt(2.0)), ("identity", 1.0)])
def test_xavier_normal_init_uses_the_activations_gain(activation, gain):
    d, h = 64, 256
    _, default = torch_model(activation, d=d, h=h, c=3, seed=7)
    _, xavier = torch_model(activation, d=d, h=h, c=3, seed=7, init="xavier_normal")
    w_default = default.layers[0].weight.detach().numpy()
    w_xavier = xavier.layers[0].weight.detach().numpy()
    expected_std = gain * np.sqrt(2.0 / (d + h))  # gain * sqrt(2/(fan_in+fan_out))
    assert w_xavier.std() == pytest.approx(expected_std, rel=0.05)
    assert abs(w_xavier.mean()) < 0.1 * expected_std
    # default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / np.sqrt(d)
    assert np.abs(w_default).max() <= bound
    assert w_default.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    assert np.abs(w_xavier).max() > bound  # a normal's tails exceed the uniform's bound
    # only hidden layers are re-initialized; the output layer is drawn the same way
    torch.testing.assert_close(xavier.layers[-1].weight, default.layers[-1].weight)


def test_identity_with_dropout_and_xavier_builds_and_trains():
    """The linear model with the lesson's regularization: dropout between its affine layers,
    Xavier-normal init with the linear gain."""
    spec, module = torch_model("identity", d=2, h=(16,), c=3, seed=1, dropout_p=0.3,
                               init="xavier_normal")
    assert type(module.activation) is torch.nn.Identity and module.dropout.p == 0.3
    before = torch_models.export_weights(module)
    history = torch_models.train(module, _data(60), torch_models.TrainConfig(
        0.05, 20, 16, 1, 10, "linear"))
    after = torch_models.export_weights(module)
    assert not module.training  # left in eval mode
    assert history.rows[-1][1] < history.rows[0][1]
    assert not np.array_equal(before["W1"], after["W1"])
    X = np.random.RandomState(2).randn(10, 2)
    np.testing.assert_allclose(models.predict_proba(spec, after, X), torch_proba(module, X),
                               atol=1e-6)


def test_unknown_init_is_refused():
    with _raises("model m: unknown init 'he'"):
        torch_models.build(spec_of("relu"), 0.0, "he")


# --- the training loop ------------------------------------------------------------------------

def test_train_is_fused_torch_optim_adam_on_cross_entropy():
    """The loop is torch's own Adam (fused) on class-weighted cross-entropy, step for step."""
    spec = spec_of("relu", h=(5, 4))
    data = _data()._replace(class_weights=np.array([1.0, 2.0, 0.5]))
    torch_models.make_deterministic(3)
    model = torch_models.build(spec)
    torch_models.train(model, data, torch_models.TrainConfig(0.05, 7, None, 3, 10, "m"))
    torch.manual_seed(3)
    manual = torch_models.build(spec)
    opt = torch.optim.Adam(manual.parameters(), lr=0.05, fused=True)
    X = torch.as_tensor(data.X_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train)
    weight = torch.tensor([1.0, 2.0, 0.5])
    for _ in range(7):
        manual.train()
        loss = torch.nn.functional.cross_entropy(manual(X), y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(model.parameters(), manual.parameters()):
        assert torch.equal(a, b)


def test_two_hidden_layers_learn_the_spiral():
    X, labels = make_spiral(60, ("c1", "c2", "c3"), 0.2, 1234)
    y = np.searchsorted(np.array(["c1", "c2", "c3"]), labels)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    torch_models.make_deterministic(0)
    model = torch_models.build(spec_of("relu", h=(32, 32)))
    hist = torch_models.train(model, TrainData(X, y, X, y, None),
                              torch_models.TrainConfig(0.01, 200, None, 0, 100, "deep"))
    assert hist.kept_row()["train_acc"] > 0.9
    assert [layer.out_features for layer in model.layers] == [32, 32, 3]


def test_make_deterministic_seeds_and_pins_threads():
    torch_models.make_deterministic(5)
    first = torch.rand(3)
    torch_models.make_deterministic(5)
    assert torch.equal(torch.rand(3), first)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1


def test_train_stops_a_diverging_run_naming_model_and_epoch():
    X = np.random.RandomState(0).randn(30, 2) * 1e38
    y = np.arange(30) % 3
    torch_models.make_deterministic(0)
    model = torch_models.build(spec_of("relu"))
    with pytest.raises(PipelineError, match=r"^train_x: training diverged at epoch \d+ "
                                            r"\(loss=(nan|inf)\)"):
        torch_models.train(model, TrainData(X, y, X, y, np.ones(3)),
                           torch_models.TrainConfig(1e6, 50, None, 0, 10, "train_x"))


def test_minibatches_cover_every_row_once_per_epoch():
    gen = torch.Generator().manual_seed(0)
    batches = torch_models._batches(10, 3, gen)
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [len(b) for b in torch_models._batches(10, None, gen)] == [10]
    assert [len(b) for b in torch_models._batches(10, 10, gen)] == [10]


def test_minibatch_order_is_a_function_of_the_seed():
    def run(seed):
        torch_models.make_deterministic(0)
        model = torch_models.build(spec_of("relu"))
        config = torch_models.TrainConfig(0.05, 3, 8, seed, 10, "m")
        return torch_models.train(model, _data(), config).rows
    assert run(1) == run(1) != run(2)


# --- a model directory back as a torch module ------------------------------------------------

def _section(backend: str, activation: str) -> ModelParams:
    """A small section of ``backend`` (the keys its schema asks for)."""
    raw = {"backend": backend, "activation": activation, "hidden_dims": [16, 8], "lr": 0.05,
           "epochs": 15, "batch_size": None, "log_every": 100, "class_weight": "balanced",
           "keep": "last", "patience": None}
    raw.update({"init_scale": 0.5, "lr": 0.5} if backend == "numpy" else
               {"dropout_p": 0.1, "init": "xavier_normal"})
    return params.build_section(f"train_{backend}", raw)


@pytest.fixture(scope="module")
def spiral():
    X, labels = make_spiral(40, ("c1", "c2", "c3"), 0.2, 1234)
    state = preprocess.fit(X, labels, ["X1", "X2"], rows=len(X))
    Z, y = state.transform(X), state.encode(labels)
    return state, TrainData(Z, y, Z, y, 1.0 / np.asarray(state.class_counts, dtype=np.float64))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_load_rebuilds_a_trained_model_of_either_backend(tmp_path, spiral, backend, activation):
    state, data = spiral
    fitted = training.fit("m", _section(backend, activation), state, data, seed=4)
    models.save(str(tmp_path / "m"), fitted.spec, fitted.weights, state)
    module = torch_models.load(str(tmp_path / "m"))
    assert not module.training
    assert type(module.activation).__name__ == ACTIVATIONS[activation].torch
    assert all(p.dtype == torch.float32 for p in module.parameters())
    grid = np.mgrid[-2:2:21j, -2:2:21j].reshape(2, -1).T  # beyond the data too
    X = np.vstack([data.X_train, grid])
    expected = models.load(str(tmp_path / "m")).predict_proba(X)
    got = torch_proba(module, X)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert len(np.unique(expected.argmax(axis=1))) > 1  # a trained model, not a constant one


def test_load_refuses_what_models_load_refuses(tmp_path):
    with _raises(f"{tmp_path / 'nope'}: model directory not found"):
        torch_models.load(str(tmp_path / "nope"))
