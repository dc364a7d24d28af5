"""nnpipe.models (artifacts, NumPy inference) and nnpipe.torch_models (modules, checkpoints)."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from nnpipe import models, preprocess, torch_models

from nnpipe.core import files
from nnpipe.core.errors import PipelineError
from nnpipe.models import ModelSpec

D, H, C = 2, 5, 3


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


@pytest.fixture
def state():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 7.0], [1.0, -1.0]])
    return preprocess.fit(X, ["b", "a", "c", "a"], ["X1", "X2"])


def spec_of(kind="mlp", d=D, h=H, c=C, **extra) -> ModelSpec:
    """``h``: one width or a tuple of widths (hidden_dims)."""
    hidden = h if isinstance(h, tuple) else (h,)
    return ModelSpec(name="m", kind=kind, input_dim=d, hidden_dims=hidden, num_classes=c,
                     **extra)


def random_weights(d=D, h=H, c=C, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    dims = (d, *(h if isinstance(h, tuple) else (h,)), c)
    weights = {}
    for i in range(1, len(dims)):
        weights[f"W{i}"], weights[f"b{i}"] = rng.randn(dims[i - 1], dims[i]), rng.randn(dims[i])
    return weights


def torch_model(kind="mlp", d=D, h=H, c=C, seed=0, **extra):
    torch.manual_seed(seed)
    spec = spec_of(kind, d, h, c, **extra)
    return spec, torch_models.build(spec)


def torch_proba(module, X: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return torch.softmax(module(torch.as_tensor(X, dtype=torch.float32)), dim=1).numpy()


# --- save / load ------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path, state):
    spec, weights = spec_of(), random_weights()
    models.save(str(tmp_path / "m"), spec, weights, state)
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "weights.npz"]
    loaded = models.load(str(tmp_path / "m"))
    assert loaded.spec == spec
    assert loaded.preprocessor == state
    assert set(loaded.weights) == {"W1", "b1", "W2", "b2"}
    for name, array in weights.items():
        np.testing.assert_array_equal(loaded.weights[name], array)
    X = np.random.RandomState(1).randn(7, D)
    np.testing.assert_array_equal(loaded.predict_proba(X), models.predict_proba(spec, weights, X))


def test_save_writes_extra_files_and_sorted_json(tmp_path, state):
    models.save(str(tmp_path / "m"), spec_of(), random_weights(), state,
                extra_files={"model.pt": b"bytes"})
    assert (tmp_path / "m/model.pt").read_bytes() == b"bytes"
    text = (tmp_path / "m/config.json").read_text()
    config = json.loads(text)
    assert config["model"] == {"name": "m", "kind": "mlp", "input_dim": D, "hidden_dims": [H],
                               "num_classes": C, "dropout_p": 0.0, "init": "default"}
    assert config["preprocess"]["classes"] == ["a", "b", "c"]
    assert text == files.dumps_json(config)  # sorted keys, stable formatting


def test_save_is_byte_identical(tmp_path, state):
    for run in ("a", "b"):
        models.save(str(tmp_path / run), spec_of(), random_weights(), state)
    for name in ("config.json", "weights.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_predict_proba_rows_sum_to_one_even_for_huge_scores():
    weights = random_weights()
    weights["W2"] = weights["W2"] * 1e4  # scores in the thousands: needs the max-shift
    X = np.random.RandomState(2).randn(50, D) * 10
    proba = models.predict_proba(spec_of(), weights, X)
    assert proba.shape == (50, C)
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_linear_kind_has_no_relu():
    # one input, one hidden unit whose pre-activation is negative: ReLU would zero it
    weights = {"W1": np.array([[-1.0]]), "b1": np.array([0.0]),
               "W2": np.array([[1.0, -1.0]]), "b2": np.array([0.0, 0.0])}
    X = np.array([[2.0]])  # hidden = -2
    linear = models.predict_proba(spec_of("linear", d=1, h=1, c=2), weights, X)
    mlp = models.predict_proba(spec_of("mlp", d=1, h=1, c=2), weights, X)
    # linear: scores (-2, 2); softmax = (1/(1+e^4), e^4/(1+e^4))
    np.testing.assert_allclose(linear[0], [1 / (1 + np.e ** 4), np.e ** 4 / (1 + np.e ** 4)])
    np.testing.assert_allclose(mlp[0], [0.5, 0.5])  # relu(-2) = 0 -> scores (0, 0)
    assert spec_of("linear").activation == "identity" and spec_of("mlp").activation == "relu"


def test_torch_linear_model_has_no_relu():
    spec, module = torch_model("linear", d=1, h=1, c=2)
    first, last = module.layers
    with torch.no_grad():
        first.weight.fill_(-1.0)
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        last.bias.zero_()
        scores = module(torch.tensor([[2.0]]))
    torch.testing.assert_close(scores, torch.tensor([[-2.0, 2.0]]))

def test_unknown_kind_is_refused():
    with _raises("model m: unknown kind 'cnn'"):
        spec_of("cnn")


@pytest.mark.parametrize("hidden", [(), (0,), (5, -1), (2.5,), (True,)])
def test_spec_refuses_bad_hidden_dims(hidden):
    with _raises("model m: input_dim, hidden_dims and num_classes must be integers > 0"):
        ModelSpec(name="m", kind="mlp", input_dim=2, hidden_dims=hidden, num_classes=3)


@pytest.mark.parametrize("hidden", [(4,), (6, 4), (6, 5, 4)], ids=["depth1", "depth2", "depth3"])
def test_depth_is_data_from_save_to_inference(tmp_path, state, hidden):
    """W1..Wn, b1..bn on disk; evaluate/plot/predict read the depth from the directory alone."""
    spec, weights = spec_of(h=hidden), random_weights(h=hidden)
    models.save(str(tmp_path / "m"), spec, weights, state)
    loaded = models.load(str(tmp_path / "m"))
    assert loaded.spec.hidden_dims == hidden
    assert sorted(loaded.weights) == sorted(models.weight_names(len(hidden) + 1))
    X = np.random.RandomState(1).randn(9, D)
    # the oracle: the forward pass written out layer by layer
    out = X
    for i in range(1, len(hidden) + 2):
        out = out @ weights[f"W{i}"] + weights[f"b{i}"]
        out = np.maximum(out, 0) if i <= len(hidden) else out
    expected = np.exp(out - out.max(axis=1, keepdims=True))
    np.testing.assert_allclose(loaded.predict_proba(X), expected / expected.sum(axis=1,
                                                                                keepdims=True))


def test_available_and_find_follow_the_directory(tmp_path, state):
    for name in ("wide_mlp", "linear"):
        models.save(str(tmp_path / name), spec_of(), random_weights(), state)
    (tmp_path / "notes").mkdir()
    assert models.available(str(tmp_path)) == ["linear", "wide_mlp"]
    assert models.find(str(tmp_path), "wide_mlp") == str(tmp_path / "wide_mlp")
    for bad in ("svm", "notes", "../" + tmp_path.name + "/linear", ""):
        with _raises("(models: linear, wide_mlp)"):
            models.find(str(tmp_path), bad)
    with _raises("(models: none: run `dvc repro` first)"):
        models.find(str(tmp_path / "missing"), "linear")


# --- load refuses -----------------------------------------------------------------------------

def test_load_missing_directory(tmp_path):
    with _raises(f"{tmp_path / 'nope'}: model directory not found"):
        models.load(str(tmp_path / "nope"))


def test_load_missing_weights(tmp_path, state):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    os.remove(tmp_path / "weights.npz")
    with _raises(f"{tmp_path / 'weights.npz'}: file not found"):
        models.load(str(tmp_path))


def test_load_refuses_pickled_object_arrays(tmp_path, state):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    weights = random_weights()
    weights["W1"] = np.array([{"not": "a weight"}, print], dtype=object)
    np.savez(tmp_path / "weights.npz", **weights)  # np.savez pickles object arrays
    with np.load(tmp_path / "weights.npz", allow_pickle=True) as archive:  # it really is one
        assert archive["W1"].dtype == object
    with _raises(f"{tmp_path / 'weights.npz'}: holds pickled objects"):
        models.load(str(tmp_path))


def test_load_refuses_config_that_is_not_json(tmp_path, state):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    (tmp_path / "config.json").write_bytes(b"\x80\x04K\x01.")  # a pickle, not JSON
    with _raises(f"{tmp_path / 'config.json'}: not valid JSON"):
        models.load(str(tmp_path))


def test_load_refuses_malformed_config(tmp_path, state):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    (tmp_path / "config.json").write_text('{"model": {"name": "m"}}')
    with _raises(f"{tmp_path / 'config.json'}: malformed model config"):
        models.load(str(tmp_path))


@pytest.mark.parametrize("name, shape", [("W1", (D + 1, H)), ("b1", (H, 1)), ("W2", (H, C - 1)),
                                         ("b2", ())])
def test_load_refuses_wrong_shapes(tmp_path, state, name, shape):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    weights = random_weights()
    weights[name] = np.zeros(shape)
    files.write_npz(str(tmp_path / "weights.npz"), weights)
    with _raises(f"{tmp_path / 'weights.npz'}: {name} has shape"):
        models.load(str(tmp_path))


def test_load_refuses_missing_array_and_non_finite(tmp_path, state):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    weights = random_weights()
    del weights["b2"]
    files.write_npz(str(tmp_path / "weights.npz"), weights)
    with _raises("missing array(s) b2"):
        models.load(str(tmp_path))
    weights = random_weights()
    weights["W2"][0, 0] = np.nan
    files.write_npz(str(tmp_path / "weights.npz"), weights)
    with _raises("W2 holds NaN or inf"):
        models.load(str(tmp_path))


def test_save_refuses_wrong_shapes(tmp_path, state):
    with _raises("W1 has shape (2, 5), expected (3, 5)"):
        models.save(str(tmp_path / "m"), spec_of(d=3), random_weights(), state)
    assert not (tmp_path / "m").exists()


# --- torch modules ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_export_weights_matches_torch_forward(kind):
    spec, module = torch_model(kind, d=3, h=7, c=4)
    weights = torch_models.export_weights(module)
    assert {k: v.shape for k, v in weights.items()} == \
        {"W1": (3, 7), "b1": (7,), "W2": (7, 4), "b2": (4,)}
    assert all(v.dtype == np.float64 for v in weights.values())
    X = np.random.RandomState(3).randn(40, 3)
    np.testing.assert_allclose(models.predict_proba(spec, weights, X), torch_proba(module, X),
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_deep_export_weights_match_torch_forward(kind):
    spec, module = torch_model(kind, d=3, h=(8, 6, 5), c=4, dropout_p=0.5)
    weights = torch_models.export_weights(module)
    assert [weights[f"W{i}"].shape for i in (1, 2, 3, 4)] == [(3, 8), (8, 6), (6, 5), (5, 4)]
    assert module.relu == (kind == "mlp")
    X = np.random.RandomState(3).randn(40, 3)
    np.testing.assert_allclose(models.predict_proba(spec, weights, X), torch_proba(module, X),
                               atol=1e-6)
    assert all(v.dtype == np.float64 for v in weights.values())
    X = np.random.RandomState(3).randn(40, 3)
    np.testing.assert_allclose(models.predict_proba(spec, weights, X), torch_proba(module, X),
                               atol=1e-6)


def test_mlp_dropout_is_off_in_eval_mode():
    spec, module = torch_model("mlp", d=2, h=50, c=3, dropout_p=0.5)
    X = np.random.RandomState(4).randn(20, 2)
    np.testing.assert_allclose(torch_proba(module, X),
                               models.predict_proba(spec, torch_models.export_weights(module), X),
                               atol=1e-6)
    module.train()
    with torch.no_grad():
        noisy = torch.softmax(module(torch.as_tensor(X, dtype=torch.float32)), dim=1).numpy()
    assert not np.allclose(noisy, torch_proba(module, X), atol=1e-6)


def test_xavier_normal_init_changes_hidden_layer_distribution():
    d, h = 64, 256
    _, default = torch_model("mlp", d=d, h=h, c=3, seed=7)
    _, xavier = torch_model("mlp", d=d, h=h, c=3, seed=7, init="xavier_normal")
    w_default = default.layers[0].weight.detach().numpy()
    w_xavier = xavier.layers[0].weight.detach().numpy()
    expected_std = np.sqrt(2.0) * np.sqrt(2.0 / (d + h))  # gain(relu) * sqrt(2/(fan_in+fan_out))
    assert w_xavier.std() == pytest.approx(expected_std, rel=0.05)
    assert abs(w_xavier.mean()) < 0.1 * expected_std
    # default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / np.sqrt(d)
    assert np.abs(w_default).max() <= bound
    assert w_default.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    assert np.abs(w_xavier).max() > bound  # a normal's tails exceed the uniform's bound
    # only hidden layers are re-initialized; the output layer is drawn the same way
    torch.testing.assert_close(xavier.layers[-1].weight, default.layers[-1].weight)


def test_xavier_needs_mlp_and_unknown_init_is_refused():
    with _raises("init xavier_normal needs kind mlp"):
        torch_models.build(spec_of("linear", init="xavier_normal"))
    with _raises("unknown init 'he'"):
        torch_models.build(spec_of("mlp", init="he"))


# --- checkpoints ------------------------------------------------------------------------------

def test_state_dict_bytes_are_deterministic_and_load_with_weights_only(tmp_path):
    spec, module = torch_model()
    first, second = torch_models.state_dict_bytes(module), torch_models.state_dict_bytes(module)
    assert first == second
    (tmp_path / "model.pt").write_bytes(first)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    for key, tensor in module.state_dict().items():
        torch.testing.assert_close(state[key], tensor)
    _, other = torch_model(seed=1)
    assert torch_models.state_dict_bytes(other) != first


def test_model_pt_loads_with_weights_only_into_a_module_of_its_config(tmp_path):
    """What a torch user does with model.pt: torch.load(weights_only=True) + load_state_dict."""
    spec, module = torch_model("mlp", h=(6, 4), dropout_p=0.3)
    (tmp_path / "model.pt").write_bytes(torch_models.state_dict_bytes(module))
    rebuilt = torch_models.build(spec)
    rebuilt.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    X = np.random.RandomState(5).randn(10, D)
    np.testing.assert_array_equal(torch_proba(rebuilt, X), torch_proba(module, X))
