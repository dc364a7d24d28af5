"""nnpipe.training: one training path for every model of the registry, its backend picked by
its params section."""
from __future__ import annotations

import ast
import copy
import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from deps import ROOT
from nnpipe import numpy_mlp, params, preprocess, torch_models, training
from nnpipe.architecture import ACTIVATIONS, MAX_WIDTH, ModelParams
from nnpipe.core.errors import PipelineError
from nnpipe.preprocess import TrainData

REPO_RAW = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
# The model registry (dvc.yaml's vars.models): model -> the data set it trains on.
MODELS = next(v["models"] for v in yaml.safe_load(
    (ROOT / "dvc.yaml").read_text(encoding="utf-8"))["vars"] if "models" in v)


BACKENDS = ("numpy", "torch")  # the backends that train by epochs; sklearn is tested below


def _raises(message: str):
    return pytest.raises(PipelineError, match=re.escape(message))


def section(backend: str, activation: str = "relu", **changes) -> ModelParams:
    """A small valid section of ``backend``, validated as params.yaml's are."""
    raw = {"backend": backend, "activation": activation, "hidden_dims": [6], "lr": 0.1,
           "epochs": 3, "batch_size": None, "log_every": 100, "class_weight": "balanced",
           "keep": "last", "patience": None}
    raw.update({"init_scale": 0.1} if backend == "numpy" else
               {"dropout_p": 0.0, "init": "default"})
    return params.build_section("train_m", {**raw, **changes})


def _data(n: int = 30, d: int = 2, seed: int = 0) -> tuple[preprocess.Preprocessor, TrainData]:
    rng = np.random.RandomState(seed)
    X, labels = rng.randn(n, d), np.array(["a", "b", "c"])[np.arange(n) % 3]
    state = preprocess.fit(X, labels, [f"X{i + 1}" for i in range(d)], rows=n + n // 2)
    y = state.encode(labels)
    weights = training.class_weights("balanced", state.class_counts)
    return state, TrainData(state.transform(X), y, state.transform(X), y, weights)


# --- spec_for ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_spec_for_takes_the_architecture_from_section_and_data(backend):
    state, _ = _data(d=3)
    spec = training.spec_for("wide", section(backend, "identity", hidden_dims=[7, 5]), state)
    assert spec == training.models.ModelSpec("wide", backend, "identity", 3, (7, 5), 3)


def test_spec_for_resolves_hidden_dims_auto_against_the_whole_data_set():
    state, _ = _data(n=30, d=2)
    assert state.rows == 45
    spec = training.spec_for("m", section("torch", hidden_dims="auto"), state)
    assert spec.hidden_dims == (2 * 45 + 2,)


def test_fit_refuses_an_auto_width_above_max_width():
    state, data = _data()
    huge = dataclasses.replace(state, rows=MAX_WIDTH)
    with _raises(f"train_m.hidden_dims=auto gives 2*{MAX_WIDTH}+2="
                 f"{2 * MAX_WIDTH + 2} hidden units for a data set of {MAX_WIDTH} "
                 f"rows, at most {MAX_WIDTH}: give a list of widths"):
        training.fit("m", section("numpy", hidden_dims="auto"), huge, data, seed=0)


# --- each backend is its own code -------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numpy_backend_is_the_lessons_init_and_gradient_descent(activation):
    state, data = _data()
    hp = section("numpy", activation, hidden_dims=[6, 4], batch_size=8)
    fitted = training.fit("m", hp, state, data, seed=11)
    rng = np.random.RandomState(11)  # one RandomState: the init, then the mini-batches
    manual = numpy_mlp.NumpyMLP.init((2, 6, 4, 3), 0.1, rng, activation)
    history = numpy_mlp.train(manual, data, 0.1, 3, 8, rng)
    assert fitted.spec.backend == "numpy" and fitted.spec.activation == activation
    assert fitted.history.rows == history.rows
    for name, array in manual.params.items():
        np.testing.assert_array_equal(fitted.weights[name], array)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_backend_is_the_torch_loop_with_dropout_and_init(activation):
    state, data = _data()
    hp = section("torch", activation, hidden_dims=[6, 4], batch_size=8, dropout_p=0.2,
                 init="xavier_normal")
    fitted = training.fit("m", hp, state, data, seed=11)
    torch_models.make_deterministic(11)
    module = torch_models.build(fitted.spec, 0.2, "xavier_normal")
    history = torch_models.train(module, data, torch_models.TrainConfig(0.1, 3, 8, 11, 100))
    assert fitted.spec.backend == "torch" and fitted.spec.activation == activation
    assert fitted.history.rows == history.rows
    for name, array in torch_models.export_weights(module).items():
        np.testing.assert_array_equal(fitted.weights[name], array)
    assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_is_a_function_of_the_seed(backend):
    state, data = _data()
    hp = section(backend, batch_size=8)
    first, again, other = (training.fit("m", hp, state, data, seed) for seed in (1, 1, 2))
    assert first.history.rows == again.history.rows != other.history.rows
    for name in first.spec.weight_names:
        np.testing.assert_array_equal(first.weights[name], again.weights[name])
        assert first.weights[name].dtype == np.float64
    assert not np.array_equal(first.weights["W1"], other.weights["W1"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_stops_a_diverging_run_naming_model_and_epoch(backend):
    state, data = _data()
    data = data._replace(X_train=data.X_train * 1e38, X_val=data.X_val * 1e38)
    with pytest.raises(PipelineError, match=r"^train_x: training diverged at epoch \d+ "
                                            r"\(loss=(nan|inf)\)"):
        training.fit("x", section(backend, lr=1e6, epochs=50), state, data, seed=0)


@pytest.mark.parametrize("backend, module, function", [
    ("numpy", numpy_mlp, "train"), ("torch", torch_models, "export_weights")])
def test_fit_refuses_weights_that_are_not_finite(monkeypatch, backend, module, function):
    original = getattr(module, function)

    def poisoned(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        weights = result if function == "export_weights" else model.params
        weights["b1"][0] = np.inf
        return result
    monkeypatch.setattr(module, function, poisoned)
    state, data = _data()
    with _raises("train_m: weights b1 are not finite after training; lower the learning rate"):
        training.fit("m", section(backend), state, data, seed=0)


# --- class_weight -----------------------------------------------------------------------------

def test_class_weights_balanced_is_scikit_learns_and_none_is_none():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.repeat([0, 1, 2], [20, 8, 12])
    np.testing.assert_allclose(training.class_weights("balanced", [20, 8, 12]),
                               compute_class_weight("balanced", classes=np.arange(3), y=y))
    assert training.class_weights("balanced", [350, 350, 350]).tolist() == [1.0, 1.0, 1.0]
    assert training.class_weights("none", [20, 8, 12]) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_balanced_weights_change_no_byte_on_equal_classes(backend):
    """The spiral's classes are equal: balanced and none train the same bytes."""
    state, data = _data()
    assert len(set(state.class_counts)) == 1
    runs = [training.fit("m", section(backend, class_weight=cw, batch_size=8), state, data, 3)
            for cw in ("balanced", "none")]
    assert runs[0].history.rows == runs[1].history.rows
    for name in runs[0].spec.weight_names:
        assert runs[0].weights[name].tobytes() == runs[1].weights[name].tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_weight_is_the_losss_weighting_on_unequal_classes(backend):
    state, data = _data(n=40)
    keep = np.flatnonzero((np.arange(40) % 3 != 2) | (np.arange(40) < 9))  # c: 3 rows of 13
    y = data.y_train[keep]
    state = dataclasses.replace(state, class_counts=tuple(np.bincount(y).tolist()))
    data = data._replace(X_train=data.X_train[keep], y_train=y)
    balanced, none = (training.fit("m", section(backend, class_weight=cw), state, data, 3)
                      for cw in ("balanced", "none"))
    assert balanced.history.rows[0][1] != none.history.rows[0][1]
    manual = training.fit("m", section(backend), state, data._replace(class_weights=None), 3)
    assert manual.history.rows == balanced.history.rows  # fit takes the weights from the counts


# --- keep and patience ------------------------------------------------------------------------

def _stop_epoch(val_losses: list[float], patience: int) -> int:
    """The epoch a patience of ``patience`` stops after, by hand."""
    best = 0
    for epoch, loss in enumerate(val_losses):
        best = epoch if loss < val_losses[best] else best
        if epoch - best >= patience:
            return epoch
    return len(val_losses) - 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_best_val_restores_the_lowest_val_loss_epoch_and_patience_stops(backend):
    state, data = _data()  # equal classes: the weights are 1
    rng = np.random.RandomState(1)
    X = rng.randn(60, 2)
    y = (X @ np.array([[2.0, 0.0, -2.0], [0.0, 2.0, -2.0]])).argmax(axis=1)
    y_val = y[30:].copy()
    y_val[::3] = (y_val[::3] + 1) % 3  # a third of val's labels moved: its loss falls, then rises
    data = data._replace(X_train=X[:30], y_train=y[:30], X_val=X[30:], y_val=y_val)
    hp = section(backend, epochs=40, lr=0.5 if backend == "numpy" else 0.02)
    last = training.fit("m", hp, state, data, 3)
    losses = [row[3] for row in last.history.rows]
    best = int(np.argmin(losses))
    assert 0 < best < 30 and last.history.kept == 39
    kept = training.fit("m", hp.model_copy(update={"keep": "best_val"}), state, data, 3)
    assert kept.history.rows == last.history.rows and kept.history.kept == best
    upto = training.fit("m", hp.model_copy(update={"epochs": best + 1}), state, data, 3)
    for name in upto.spec.weight_names:
        np.testing.assert_array_equal(kept.weights[name], upto.weights[name])
    stopped = training.fit("m", hp.model_copy(update={"keep": "best_val", "patience": 3}),
                           state, data, 3)
    assert len(stopped.history.rows) == _stop_epoch(losses, 3) + 1 < 40
    assert stopped.history.kept == int(np.argmin(losses[:len(stopped.history.rows)]))
    assert stopped.history.kept_epoch() == best and stopped.history.kept_row()["epoch"] == best


# --- the sklearn backend: the reference --------------------------------------------------------

def _sklearn(class_weight: str = "balanced", epochs: int = 200) -> ModelParams:
    """A torch section switched to sklearn in one key (its other keys are ignored)."""
    raw = {**section("torch").model_dump(), "backend": "sklearn", "epochs": epochs,
           "class_weight": class_weight}
    return params.build_section("train_ref", raw)


@pytest.mark.parametrize("classes, class_weight", [(3, "balanced"), (3, "none"), (2, "balanced")])
def test_sklearn_backend_is_logistic_regression_as_w1_b1(classes, class_weight):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    codes = (X[:, 0] * 2 + rng.randn(60) > 0).astype(int) + (classes == 3) * (X[:, 1] > 0.5)
    labels = np.array(["a", "b", "c"])[codes]
    state = preprocess.fit(X, labels, ["X1", "X2", "X3"], rows=90)
    Z, y = state.transform(X), state.encode(labels)
    fitted = training.fit("ref", _sklearn(class_weight), state, TrainData(Z, y, Z, y), seed=0)
    assert fitted.spec.layer_dims == (3, classes) and fitted.spec.activation == "identity"
    weight = "balanced" if class_weight == "balanced" else None
    reference = LogisticRegression(max_iter=200, class_weight=weight).fit(Z, y)
    np.testing.assert_allclose(training.models.predict_proba(fitted.spec, fitted.weights, Z),
                               reference.predict_proba(Z), rtol=1e-9, atol=1e-12)
    (row,) = fitted.history.rows
    assert row[0] == reference.n_iter_[0] - 1 and row[2] == reference.score(Z, y)


def test_a_sklearn_model_is_saved_and_served_like_any_model(tmp_path):
    state, data = _data()
    fitted = training.fit("ref", _sklearn(), state, data, seed=0)
    training.models.save(str(tmp_path), fitted.spec, fitted.weights, state)
    loaded = training.models.load(str(tmp_path))
    assert loaded.spec.backend == "sklearn" and loaded.spec.hidden_dims == ()
    module = torch_models.load(str(tmp_path))
    with torch.no_grad():
        torch_proba = torch.softmax(module(torch.as_tensor(data.X_val, dtype=torch.float32)), 1)
    np.testing.assert_allclose(torch_proba.numpy(), loaded.predict_proba(data.X_val), atol=1e-6)


def test_a_sklearn_fit_short_of_convergence_says_so(caplog):
    state, data = _data()
    with caplog.at_level("WARNING", logger="nnpipe.training"):
        training.fit("ref", _sklearn(epochs=1), state, data, seed=0)
    assert "train_ref: lbfgs did not converge in epochs=1 iterations; raise epochs" in caplog.text


# --- the registry -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registry_model_trains_through_fit(name):
    """Each model of dvc.yaml's registry, as its section says (a few epochs, on tiny data)."""
    raw = copy.deepcopy(REPO_RAW[f"train_{name}"])
    raw.update(epochs=2, log_every=1)
    hp = params.build_section(f"train_{name}", raw)
    state, data = _data(n=24)
    fitted = training.fit(name, hp, state, data, seed=REPO_RAW["seed"])
    assert (fitted.spec.name, fitted.spec.backend, fitted.spec.activation) == \
        (name, raw["backend"], raw["activation"])
    assert fitted.spec.hidden_dims == training.hidden_widths(hp.hidden_dims, state.rows, 2, "")
    assert fitted.spec.layer_dims == (2, *fitted.spec.hidden_dims, 3)
    assert sorted(fitted.weights) == sorted(fitted.spec.weight_names)
    assert [row[0] for row in fitted.history.rows] == [0, 1]


# --- what the code may use --------------------------------------------------------------------

def test_nnpipe_has_no_optimizer_of_its_own_and_no_private_torch_api():
    for path in (ROOT / "nnpipe").rglob("*.py"):
        text = path.read_text()
        assert "torch._C" not in text and "class Adam" not in text, path.name


@pytest.mark.slow
def test_torch_loads_only_for_a_torch_model():
    code = ("import sys, numpy as np\n"
            "from nnpipe import preprocess, training\n"
            "from nnpipe import params\n"
            "X = np.random.RandomState(0).randn(12, 2); labels = np.array(list('abc' * 4))\n"
            "state = preprocess.fit(X, labels, ['X1', 'X2'], rows=12)\n"
            "y = state.encode(labels)\n"
            "hp = params.build_section('train_m', {'backend': 'numpy', 'activation': 'relu',\n"
            "    'hidden_dims': [4], 'lr': 0.1, 'epochs': 2, 'batch_size': None,\n"
            "    'log_every': 1, 'init_scale': 0.1, 'class_weight': 'none',\n"
            "    'keep': 'last', 'patience': None})\n"
            "training.fit('m', hp, state, preprocess.TrainData(X, y, X, y, None), 0)\n"
            "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "False"


def _imported_after_preload(work: str) -> list[str]:
    """The non-nnpipe modules a fresh process imports to run ``work`` after the warm
    server's PRELOAD (what a forked stage still has to import)."""
    code = ("import importlib, sys\n"
            "from warmstart.protocol import PRELOAD\n"
            "for name in PRELOAD: importlib.import_module(name)\n"
            "before = set(sys.modules)\n"
            f"{work}\n"
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('nnpipe')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_warm_preload_holds_what_a_torch_fit_imports():
    """torch.optim and use_deterministic_algorithms pull in torch._dynamo (~800 modules):
    the warm server's PRELOAD imports them once, so a forked stage imports ~none."""
    new = _imported_after_preload(
        "import numpy as np\n"
        "from nnpipe import preprocess, training\n"
        "from nnpipe import params\n"
        "X = np.random.RandomState(0).randn(30, 2); labels = np.array(list('abc' * 10))\n"
        "state = preprocess.fit(X, labels, ['X1', 'X2'], rows=30)\n"
        "y = state.encode(labels)\n"
        "hp = params.build_section('train_m', {'backend': 'torch', 'activation': 'relu',\n"
        "    'hidden_dims': [5], 'lr': 0.1, 'epochs': 3, 'batch_size': None, 'log_every': 10,\n"
        "    'class_weight': 'balanced', 'keep': 'best_val', 'patience': 2,\n"
        "    'dropout_p': 0.1, 'init': 'xavier_normal'})\n"
        "training.fit('m', hp, state, preprocess.TrainData(X, y, X, y, None), 0)")
    assert len(new) < 5 and not any(m.startswith(("torch._dynamo", "torch._inductor", "sympy"))
                                    for m in new), new[:20]


@pytest.mark.slow
def test_warm_preload_holds_what_validating_params_imports():
    """pydantic imports its parts lazily: the server's PRELOAD holds the ones params.load uses,
    so a forked stage builds only its own sections' schemas (defer_build)."""
    sections = ", ".join(repr(f"train_{m}") for m in MODELS)
    assert _imported_after_preload(
        "from nnpipe import params\n"
        f"params.load('params.yaml', 'seed', 'math', 'split', 'random_data', {sections})") == []


@pytest.mark.slow
def test_balanced_weights_raise_the_rare_classs_recall(capsys):
    """docs/your-own-data.md's class_weight table (``pytest -s`` prints it): the registry's
    spiral models on a spiral of arms of 500, 150 and 50 rows, split as the pipeline splits."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from nnpipe.data import make_spiral
    from nnpipe.split import stratified_split

    X, labels = make_spiral(500, ("c1", "c2", "c3"), 0.2, 1234)
    rows = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in
                           (("c1", 500), ("c2", 150), ("c3", 50))])
    X, labels = X[rows], labels[rows]
    train, val, test = stratified_split(labels, 0.7, 0.15, 0.15, REPO_RAW["seed"])
    state = preprocess.fit(X[train], labels[train], ["X1", "X2"], rows=len(X))
    data = TrainData(*(a for i in (train, val) for a in (state.transform(X[i]),
                                                          state.encode(labels[i]))))
    y = state.encode(labels[test])
    lines = ["| model | class_weight | accuracy | macro-F1 | recall of c3 (rare) |"]
    for name in (m for m, where in MODELS.items() if where == "data/processed"):
        recall = {}
        for cw in ("balanced", "none"):
            hp = params.build_section(f"train_{name}", {**REPO_RAW[f"train_{name}"],
                                                        "class_weight": cw})
            fitted = training.fit(name, hp, state, data, REPO_RAW["seed"])
            pred = training.models.predict_proba(fitted.spec, fitted.weights,
                                                 state.transform(X[test])).argmax(axis=1)
            recall[cw] = recall_score(y, pred, labels=[2], average=None)[0]
            lines.append(f"| {name} | {cw} | {accuracy_score(y, pred):.4f} | "
                         f"{f1_score(y, pred, average='macro'):.4f} | {recall[cw]:.4f} |")
        assert recall["balanced"] >= recall["none"], name
    with capsys.disabled():
        print("\n" + "\n".join(lines))
