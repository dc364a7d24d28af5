"""nnpipe.training: the Adam used in every torch loop matches torch.optim.Adam, and the loop."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from deps import ROOT
from nnpipe import models, torch_models, training
from nnpipe.errors import PipelineError
from nnpipe.history import TrainData


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = models.ModelSpec("m", "mlp", "torch", 3, 7, 4)
    return torch_models.build(spec)


@pytest.mark.parametrize("lr", [0.1, 0.01, 1e-3])
def test_adam_is_bit_identical_to_torch_optim_adam(lr):
    ours, theirs = _model(0), _model(0)
    opt_ours = training.Adam(ours.parameters(), lr=lr)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=lr, foreach=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(25):
        X = torch.randn(16, 3, generator=gen)
        y = torch.randint(0, 4, (16,), generator=gen)
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_adam_skips_parameters_without_gradients():
    model = _model(0)
    before = [p.detach().clone() for p in model.parameters()]
    opt = training.Adam(model.parameters(), lr=0.1)
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_training_does_not_import_the_torch_compiler():
    code = ("import sys, numpy as np\n"
            "from nnpipe import training, models\n"
            "from nnpipe.history import TrainData\n"
            "spec = models.ModelSpec('m', 'mlp', 'torch', 2, 5, 3)\n"
            "X = np.random.RandomState(0).randn(30, 2); y = np.arange(30) % 3\n"
            "training.fit(spec, TrainData(X, y, X, y, np.ones(3)),\n"
            "             training.TrainConfig(0.1, 3, None, 0, 10, 'm'))\n"
            "print(any(m.startswith('torch._dynamo') for m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "False"


def test_deterministic_algorithms_are_on_after_fit():
    spec = models.ModelSpec("m", "mlp", "torch", 2, 5, 3)
    X = np.random.RandomState(0).randn(30, 2)
    y = np.arange(30) % 3
    training.fit(spec, TrainData(X, y, X, y, np.ones(3)),
                 training.TrainConfig(0.1, 2, None, 0, 10, "m"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1


def test_fit_stops_a_diverging_run_naming_model_and_epoch():
    spec = models.ModelSpec("m", "mlp", "torch", 2, 5, 3)
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
