"""nnpipe.training: one loop (torch.optim.Adam) for every torch model, at any depth."""
from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
import torch

from deps import ROOT
from nnpipe import models, torch_models, training
from nnpipe.core.errors import PipelineError
from nnpipe.data import make_spiral
from nnpipe.history import TrainData


def _data(n: int = 30, seed: int = 0) -> TrainData:
    X = np.random.RandomState(seed).randn(n, 2)
    y = np.arange(n) % 3
    return TrainData(X, y, X, y, np.ones(3))


def test_fit_is_torch_optim_adam_on_cross_entropy():
    """The loop is torch's own Adam on class-weighted cross-entropy, step for step."""
    spec = models.ModelSpec("m", "mlp", 2, (5, 4), 3)
    data = _data()
    model, _ = training.fit(spec, data, training.TrainConfig(0.05, 7, None, 3, 10, "m"))
    torch.manual_seed(3)
    manual = torch_models.build(spec)
    opt = torch.optim.Adam(manual.parameters(), lr=0.05)
    X = torch.as_tensor(data.X_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train)
    for _ in range(7):
        manual.train()
        loss = torch.nn.functional.cross_entropy(manual(X), y, weight=torch.ones(3))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(model.parameters(), manual.parameters()):
        assert torch.equal(a, b)


def test_nnpipe_has_no_optimizer_of_its_own_and_no_private_torch_api():
    for path in (ROOT / "nnpipe").glob("*.py"):
        text = path.read_text()
        assert "torch._C" not in text and "class Adam" not in text, path.name


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
    return ast.literal_eval(result.stdout.strip())


def test_warm_preload_holds_what_a_torch_fit_imports():
    """torch.optim and use_deterministic_algorithms pull in torch._dynamo (~800 modules):
    the warm server's PRELOAD imports them once, so a forked stage imports ~none."""
    new = _imported_after_preload(
        "import numpy as np\n"
        "from nnpipe import training, models\n"
        "from nnpipe.history import TrainData\n"
        "spec = models.ModelSpec('m', 'mlp', 2, (5,), 3)\n"
        "X = np.random.RandomState(0).randn(30, 2); y = np.arange(30) % 3\n"
        "training.fit(spec, TrainData(X, y, X, y, np.ones(3)),\n"
        "             training.TrainConfig(0.1, 3, None, 0, 10, 'm'))")
    assert len(new) < 5 and not any(m.startswith(("torch._dynamo", "torch._inductor", "sympy"))
                                    for m in new), new[:20]


def test_warm_preload_holds_what_validating_params_imports():
    """pydantic imports its parts lazily: the server's PRELOAD holds the ones params.load uses,
    so a forked stage builds only its own sections' schemas (defer_build)."""
    assert _imported_after_preload(
        "from nnpipe import params\n"
        "params.load('params.yaml', 'seed', 'math', 'split', 'train_torch_mlp',\n"
        "            kinds={'train_torch_mlp': 'torch_mlp'})") == []


def test_two_hidden_layers_learn_the_spiral():
    X, labels = make_spiral(60, ("c1", "c2", "c3"), 0.2, 1234)
    y = np.searchsorted(np.array(["c1", "c2", "c3"]), labels)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    spec = models.ModelSpec("deep", "mlp", 2, (32, 32), 3)
    model, hist = training.fit(spec, TrainData(X, y, X, y, None),
                               training.TrainConfig(0.01, 200, None, 0, 100, "deep"))
    assert hist.last()["train_acc"] > 0.9
    assert [layer.out_features for layer in model.layers] == [32, 32, 3]


def test_deterministic_algorithms_are_on_after_fit():
    spec = models.ModelSpec("m", "mlp", 2, (5,), 3)
    X = np.random.RandomState(0).randn(30, 2)
    y = np.arange(30) % 3
    training.fit(spec, TrainData(X, y, X, y, np.ones(3)),
                 training.TrainConfig(0.1, 2, None, 0, 10, "m"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1


def test_fit_stops_a_diverging_run_naming_model_and_epoch():
    spec = models.ModelSpec("m", "mlp", 2, (5,), 3)
    X = np.random.RandomState(0).randn(30, 2) * 1e38
    y = np.arange(30) % 3
    with pytest.raises(PipelineError, match=r"train_x: training diverged at epoch \d+"):
        training.fit(spec, TrainData(X, y, X, y, np.ones(3)),
                     training.TrainConfig(1e6, 50, None, 0, 10, "train_x"))


def test_minibatches_cover_every_row_once_per_epoch():
    gen = torch.Generator().manual_seed(0)
    batches = training._batches(10, 3, gen)
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [len(b) for b in training._batches(10, None, gen)] == [10]
