"""nnpipe.models: model directories (weights.npz + config.json) and NumPy inference for every
model, whichever backend trained it."""
from __future__ import annotations

import json
import os
import math
import re

import numpy as np
import pytest

from nnpipe import models, preprocess
from nnpipe.core import files
from nnpipe.core.errors import PipelineError
from nnpipe.architecture import ACTIVATIONS, BACKENDS
from nnpipe.models import CURVES, History, ModelSpec

D, H, C = 2, 5, 3


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


@pytest.fixture
def state():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 7.0], [1.0, -1.0]])
    return preprocess.fit(X, ["b", "a", "c", "a"], ["X1", "X2"], rows=6)


def spec_of(activation="relu", d=D, h=H, c=C, backend="torch") -> ModelSpec:
    """``h``: one width or a tuple of widths (hidden_dims)."""
    hidden = h if isinstance(h, tuple) else (h,)
    return ModelSpec(name="m", backend=backend, activation=activation, input_dim=d,
                     hidden_dims=hidden, num_classes=c)


def random_weights(d=D, h=H, c=C, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    dims = (d, *(h if isinstance(h, tuple) else (h,)), c)
    weights = {}
    for i in range(1, len(dims)):
        weights[f"W{i}"], weights[f"b{i}"] = rng.randn(dims[i - 1], dims[i]), rng.randn(dims[i])
    return weights


# --- save / load ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_save_load_round_trip(tmp_path, state, backend, activation):
    spec, weights = spec_of(activation, backend=backend), random_weights()
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


def test_save_writes_two_files_and_sorted_json(tmp_path, state):
    models.save(str(tmp_path / "m"), spec_of("identity", backend="numpy"), random_weights(),
                state)
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "weights.npz"]
    text = (tmp_path / "m/config.json").read_text()
    config = json.loads(text)
    assert config["model"] == {"name": "m", "backend": "numpy", "activation": "identity",
                               "input_dim": D, "hidden_dims": [H], "num_classes": C}
    assert config["preprocess"]["classes"] == ["a", "b", "c"]
    assert config["preprocess"]["rows"] == 6
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_activation_has_no_relu(backend):
    # one input, one hidden unit whose pre-activation is negative: ReLU would zero it
    weights = {"W1": np.array([[-1.0]]), "b1": np.array([0.0]),
               "W2": np.array([[1.0, -1.0]]), "b2": np.array([0.0, 0.0])}
    X = np.array([[2.0]])  # hidden = -2
    identity = models.predict_proba(spec_of("identity", 1, 1, 2, backend), weights, X)
    relu = models.predict_proba(spec_of("relu", 1, 1, 2, backend), weights, X)
    # identity: scores (-2, 2); softmax = (1/(1+e^4), e^4/(1+e^4))
    np.testing.assert_allclose(identity[0], [1 / (1 + np.e ** 4), np.e ** 4 / (1 + np.e ** 4)])
    np.testing.assert_allclose(relu[0], [0.5, 0.5])  # relu(-2) = 0 -> scores (0, 0)
    np.testing.assert_array_equal(models.forward(weights, "identity", X), [[-2.0, 2.0]])
    np.testing.assert_array_equal(models.forward(weights, "relu", X), [[0.0, 0.0]])


def test_forward_applies_no_activation_after_the_last_layer():
    weights = {"W1": np.array([[1.0]]), "b1": np.array([0.0]),
               "W2": np.array([[-1.0, 1.0]]), "b2": np.array([0.0, 0.0])}
    np.testing.assert_array_equal(models.forward(weights, "relu", np.array([[3.0]])),
                                  [[-3.0, 3.0]])  # negative logits survive


def test_softmax_rows_sum_to_one_for_huge_logits():
    scores = np.array([[1e4, 1e4 - 1.0], [-1e4, 0.0]])
    before = scores.copy()
    probs = models.softmax(scores)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])
    assert np.all(np.isfinite(probs))
    np.testing.assert_array_equal(scores, before)


def test_predict_proba_gives_a_row_the_same_bytes_in_any_chunk():
    spec, weights = spec_of(h=(6, 4)), random_weights(h=(6, 4))
    X = np.random.RandomState(8).randn(25, D)
    whole = models.predict_proba(spec, weights, X)
    np.testing.assert_array_equal(models.predict_proba(spec, weights, X, budget=7), whole)
    np.testing.assert_array_equal(models.predict_proba(spec, weights, X[3:4])[0], whole[3])
    np.testing.assert_allclose(whole, models.softmax(models.forward(weights, "relu", X)),
                               rtol=1e-13, atol=0)


@pytest.mark.parametrize("field, value, known", [
    ("backend", "jax", "numpy, torch, sklearn"), ("backend", "mlp", "numpy, torch, sklearn"),
    ("activation", "tanh", "identity, relu"), ("activation", None, "identity, relu")])
def test_unknown_backend_or_activation_is_refused(field, value, known):
    fields = {"backend": "torch", "activation": "relu", field: value}
    with _raises(f"model m: unknown {field} {value!r} (known: {known})"):
        ModelSpec(name="m", input_dim=2, hidden_dims=(4,), num_classes=3, **fields)


@pytest.mark.parametrize("hidden", [(0,), (5, -1), (2.5,), (True,)])
def test_spec_refuses_bad_hidden_dims(hidden):
    with _raises("model m: input_dim, hidden_dims and num_classes must be integers > 0"):
        ModelSpec(name="m", backend="numpy", activation="relu", input_dim=2, hidden_dims=hidden,
                  num_classes=3)


def test_spec_holds_hidden_dims_as_a_tuple():
    spec = ModelSpec("m", "torch", "relu", 2, [6, 4], 3)
    assert spec.hidden_dims == (6, 4)
    assert spec.layer_dims == (2, 6, 4, 3)
    assert spec.weight_names == ("W1", "b1", "W2", "b2", "W3", "b3")


@pytest.mark.parametrize("hidden", [(), (4,), (6, 4), (6, 5, 4)],
                         ids=["depth0", "depth1", "depth2", "depth3"])
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


@pytest.mark.parametrize("model", [
    {"name": "m"},
    {"name": "m", "kind": "mlp", "input_dim": D, "hidden_dims": [H], "num_classes": C},
    {"name": "m", "backend": "torch", "activation": "relu", "input_dim": D, "hidden_dims": [H],
     "num_classes": C, "dropout_p": 0.1},
], ids=["missing-fields", "old-kind", "extra-field"])
def test_load_refuses_malformed_config(tmp_path, state, model):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model": model}))
    with _raises(f"{tmp_path / 'config.json'}: malformed model config"):
        models.load(str(tmp_path))


def test_load_refuses_an_unknown_backend_in_config(tmp_path, state):
    models.save(str(tmp_path), spec_of(), random_weights(), state)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["backend"] = "jax"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with _raises(f"{tmp_path / 'config.json'}: malformed model config (model m: unknown "
                 "backend 'jax' (known: numpy, torch, sklearn))"):
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


# --- the training record (History, the rows logged) ----------------------------------------

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


@pytest.mark.parametrize("log_every, kept, epochs", [
    (1, None, [0, 1, 2, 3, 4]), (2, None, [0, 2, 4]), (3, None, [0, 3, 4]),
    (3, 1, [0, 1, 3, 4]), (100, 2, [0, 2, 4])])
def test_logged_rows_are_every_log_every_th_the_last_and_the_kept(log_every, kept, epochs):
    h = History("m", kept=kept)
    for epoch in range(5):
        h.add(epoch, 1.0 / (epoch + 1), 0.5, 2.0, 0.25)
    rows = h.logged(log_every)
    assert [row["epoch"] for row in rows] == epochs
    assert set(rows[0]) == {"epoch", *CURVES} and rows[1]["train_loss"] == 1.0 / (epochs[1] + 1)


def test_logged_empty_history_is_empty():
    assert History().logged(1) == []


def test_line_in_the_lesson_style(hist):
    line = hist.line(1)
    assert line.startswith("Epoch: 10 | loss: 0.66, accuracy: 59.8")
    assert line == "Epoch: 10 | loss: 0.66, accuracy: 59.8 | val_loss: 0.70, val_accuracy: 55.0"
    assert hist.line(-1) == line
    assert hist.line(0).startswith("Epoch: 0 | loss: 1.10, accuracy: 33.3 |")


def test_the_kept_row_is_the_final_one_unless_a_keeper_chose(hist):
    assert hist.kept_row() == {"epoch": 10, "train_loss": 0.6612, "train_acc": hist.rows[1][2],
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
    assert all(math.isfinite(v) for row in hist.logged(1) for v in row.values())


def test_add_accepts_finite_losses_and_any_accuracy(hist):
    hist.add(20, 1e300, 0.0, -0.0, 1.0)
    assert hist.rows[-1] == (20, 1e300, 0.0, -0.0, 1.0)
