"""Experiments end to end: `dvc exp run`, `--queue`, `exp show`, `metrics diff` and a shared
cache, with the real `dvc` CLI in a temporary git repo holding a copy of this repository (a
module of its own, so it runs beside tests/test_e2e.py on another core).
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import time

import numpy as np
import pytest
import yaml
from deps import ROOT
from e2e_util import CHECK, copy_repo, restore, run, stages_run, status, terminal
from pipeline import MODELS, REGISTRY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repo after `dvc repro` of the default pipeline."""
    path = tmp_path_factory.mktemp("repo")
    copy_repo(path)
    result = run(path, "dvc", "repro")
    return path, result.stdout + result.stderr


# --- experiments --------------------------------------------------------------------------------

def test_a_misspelled_param_is_refused_with_or_without_plus(repo):
    path, _ = repo
    result = run(path, "dvc", "exp", "run", "-S", "train_torch_mlp.lrr=0.1", check=False)
    assert result.returncode != 0 and "lrr" in result.stdout + result.stderr
    result = run(path, "dvc", "exp", "run", "-S", "+train_torch_mlp.lrr=0.1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown key train_torch_mlp.lrr" in output and "Traceback" not in output
    restore(path)  # DVC removed the stage's outputs before running it: checkout restores them
    assert (path / "models/torch_mlp/weights.npz").is_file()
    assert status(path) == set()


@pytest.mark.parametrize("override, fragment", [("math.portable=1", "math.portable=1"),
                                                ("seed=1234.0", "seed=1234.0")])
def test_a_value_dvc_deems_unchanged_is_still_validated(repo, override, fragment):
    """Python finds 1 == True and 1234.0 == 1234, so DVC re-runs no stage that reads the key;
    check_params, a dependent of params.yaml's bytes, runs and refuses it."""
    path, _ = repo
    try:
        result = run(path, "dvc", "exp", "run", "-S", override, check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        errors = [line for line in output.splitlines() if line.startswith("check_params: error")]
        assert len(errors) == 1 and fragment in errors[0], output
        assert "Traceback" not in output
    finally:
        restore(path)


def test_exp_run_changes_only_torch_mlp_metrics_and_diffs_report_it(repo):
    path, _ = repo
    before = json.loads((path / "reports/metrics.json").read_text())
    try:
        result = run(path, "dvc", "exp", "run", "-S", "train_torch_mlp.lr=0.001")
        assert stages_run(result.stdout) == {"train@torch_mlp", "evaluate",
                                              "plot_model@torch_mlp"} | CHECK
        after = json.loads((path / "reports/metrics.json").read_text())
        assert after["torch_mlp"] != before["torch_mlp"]
        assert all(after[m] == before[m] for m in MODELS if m != "torch_mlp")
        changed = json.loads(run(path, "dvc", "metrics", "diff", "--json").stdout)[
            "reports/metrics.json"]
        assert "torch_mlp.test.accuracy" in changed or "torch_mlp.val.accuracy" in changed
        assert not any(not key.startswith("torch_mlp.") for key in changed)
        params_diff = json.loads(run(path, "dvc", "params", "diff", "--json").stdout)
        lr = params_diff["params.yaml"]["train_torch_mlp.lr"]
        assert (lr["old"], lr["new"]) == (0.01, 0.001)
        plots = json.loads(run(path, "dvc", "plots", "diff", "HEAD", "--json").stdout)
        loss = plots["data"]["reports/curves/torch_mlp"][0]
        assert set(loss["revisions"]) == {"workspace", "HEAD"}
        rows = [r for r in loss["content"]["data"]["values"] if r["field"] == "val_loss"]
        curves = {rev: [r["val_loss"] for r in rows if r["rev"] == rev]
                  for rev in ("workspace", "HEAD")}
        assert curves["workspace"] and curves["HEAD"] and curves["workspace"] != curves["HEAD"]
        header = run(path, "dvc", "exp", "show", "--csv").stdout.splitlines()[0].split(",")
        for column in ("torch_mlp.test.f1", "linear.test.accuracy", "train_torch_mlp.lr"):
            assert column in header
    finally:
        restore(path)
    assert status(path) == set()


def test_queued_grid_sweep_runs_two_experiments(repo):
    path, _ = repo
    try:
        run(path, "dvc", "exp", "run", "--queue", "-S", "train_torch_mlp.hidden_dims=[8],[64]")
        run(path, "dvc", "queue", "start", "-j", "2")
        deadline = time.time() + 600
        while time.time() < deadline:
            queue = run(path, "dvc", "queue", "status").stdout
            if "Queued" not in queue and "Running" not in queue:
                break
            time.sleep(3)
        assert queue.count("Success") == 2, queue
        shown = json.loads(run(path, "dvc", "exp", "show", "--json").stdout)
        results = {}
        for baseline in shown:
            for exp in baseline.get("experiments") or []:
                data = exp["revs"][0]["data"]
                hidden = data["params"]["params.yaml"]["data"]["train_torch_mlp"]["hidden_dims"]
                if hidden in ([8], [64]):  # other tests' experiments may be listed too
                    results[hidden[0]] = data["metrics"]["reports/metrics.json"]["data"][
                        "torch_mlp"]
        assert set(results) == {8, 64} and results[8] != results[64]
    finally:
        run(path, "dvc", "queue", "stop", "--kill", check=False)
        run(path, "dvc", "exp", "remove", "--all-commits", "--queue", check=False)
        restore(path)


def test_shared_cache_clone_pulls_and_runs_no_stage(repo, tmp_path):
    path, _ = repo
    remote = tmp_path / "remote"
    run(path, "dvc", "remote", "add", "--local", "shared", str(remote))
    run(path, "dvc", "push", "-r", "shared")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(path), str(clone))
    run(clone, "dvc", "remote", "add", "--local", "shared", str(remote))
    run(clone, "dvc", "pull", "-r", "shared")
    assert stages_run(run(clone, "dvc", "repro").stdout) == set()
    assert run(clone, "git", "status", "--porcelain").stdout == ""


def test_two_hidden_layer_mlps_run_end_to_end_from_exp_run(repo):
    """Depth is a param: both MLPs train, evaluate, plot and serve with two hidden layers."""
    path, _ = repo
    try:
        result = run(path, "dvc", "exp", "run", "-S", "train_torch_mlp.hidden_dims=[32,32]",
                     "-S", "train_numpy_mlp.hidden_dims=[64,32]")
        assert stages_run(result.stdout) == {"train@torch_mlp", "train@numpy_mlp", "evaluate",
                                              "plot_model@torch_mlp", "plot_model@numpy_mlp"} \
            | CHECK
        metrics = json.loads((path / "reports/metrics.json").read_text())
        for model, dims in (("torch_mlp", [32, 32]), ("numpy_mlp", [64, 32])):
            assert metrics[model]["test"]["accuracy"] >= 0.9, (model, metrics[model])
            config = json.loads((path / f"models/{model}/config.json").read_text())
            assert config["model"]["hidden_dims"] == dims
            with np.load(path / f"models/{model}/weights.npz", allow_pickle=False) as weights:
                assert sorted(weights.files) == ["W1", "W2", "W3", "b1", "b2", "b3"]
            served = run(path, sys.executable, "-m", "nnpipe.predict", "--model", model,
                         "--json", "X1=0.1", "X2=0.1")
            assert json.loads(served.stdout)["model"] == model
    finally:
        restore(path)
    assert status(path) == set()


def _readme_recipe() -> tuple[dict, dict]:
    """docs/change-it.md's model recipe: its params.yaml block and its dvc.yaml block."""
    text = (ROOT / "docs" / "change-it.md").read_text()
    section = text.split("\n## A model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    params, dvc = (yaml.safe_load(b) for b in blocks[:2])
    return params, dvc


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            for target, item in zip(into[key], value):  # vars: the registry's mapping
                if isinstance(item, dict) and key == "vars":
                    _merge(target, item)
            into[key] += [item for item in value if key != "vars" or not isinstance(item, dict)]
        else:
            into[key] = value


def test_the_model_recipe_adds_a_fifth_model_without_python(repo):
    path, _ = repo
    params_block, dvc_block = _readme_recipe()
    (name,) = {k[len("train_"):] for k in params_block}
    try:
        params = yaml.safe_load((path / "params.yaml").read_text())
        params.update(params_block)
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        dvc = yaml.safe_load((path / "dvc.yaml").read_text())
        _merge(dvc, dvc_block)
        (path / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
        ran = stages_run(run(path, "dvc", "repro").stdout)
        assert {f"train@{name}", "evaluate", f"plot_model@{name}"} <= ran
        assert not ran & {f"train@{m}" for m in MODELS}
        metrics = json.loads((path / "reports/metrics.json").read_text())
        assert metrics[name]["test"]["accuracy"] >= 0.9
        config = json.loads((path / f"models/{name}/config.json").read_text())
        assert config["model"]["hidden_dims"] == params_block[f"train_{name}"]["hidden_dims"]
        assert (path / f"reports/figures/{name}_curves.png").is_file()
        served = run(path, sys.executable, "-m", "nnpipe.predict", "--model", name,
                     "X1=0.1", "X2=0.1")
        assert served.stdout.startswith("predicted: ") and f", {name})" in served.stdout
        # the tests follow the registry: the fifth model breaks none of those that read it
        # (dvc.yaml's checks, and the tiny pipeline's, with the fifth model in it)
        result = run(path, sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                     "-m", "not slow", "tests/test_dvc_yaml.py", "tests/test_stages.py", "-k",
                     "dvc_yaml or model_dir or curves or metrics or headline or registry",
                     check=False)
        assert result.returncode == 0, result.stdout[-3000:]
    finally:
        run(path, "git", "checkout", "--", ".")
        for leftover in (path / "models" / name, *path.glob(f"reports/*/{name}[._]*")):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        run(path, "dvc", "checkout", "--quiet")
    assert status(path) == set()


def test_exp_show_at_160_columns_shows_each_models_test_accuracy_first(repo):
    """In a terminal, plain `dvc exp show` pages its full-width table through `less -S`: the
    first 160 columns hold each model's test accuracy per experiment. With --only-changed the
    changed headline comes first, and README's line that drops the per-split figures shows
    the changed params beside it, fitted to the terminal."""
    path, _ = repo
    try:
        run(path, "dvc", "exp", "run", "-n", "lr-005", "-S", "train_torch_mlp.lr=0.05")
        plain = terminal(path, ["dvc", "exp", "show"], 160, DVC_PAGER="cat")
        header = next(line for line in plain if "Experiment" in line)
        for model in REGISTRY:
            assert f"{model}.test_acc" in header, header
        row = next(line for line in plain if "[lr-005]" in line)
        shown = json.loads((path / "reports/headline.json").read_text())
        for model in REGISTRY:  # each value right-aligned under its header
            start = header.index(f"{model}.test_acc")
            cell = row[start:start + len(f"{model}.test_acc")].strip()
            assert cell == f"{shown[model]['test_acc']:.5g}", (model, row)
        changed = terminal(path, ["dvc", "exp", "show", "--only-changed"], 160, DVC_PAGER="cat")
        header = next(line for line in changed if "Experiment" in line).split()
        assert header[2] == "torch_mlp.test_acc", header  # the first metric column
        beside = terminal(path, ["dvc", "exp", "show", "--only-changed", "--no-pager", "--drop",
                                 r".*\.(train|val|test)\."], 160)
        header = next(line for line in beside if "Experiment" in line).split()
        assert header[2] == "torch_mlp.test_acc" and "train_torch_mlp.lr" in header, header
    finally:
        run(path, "dvc", "exp", "remove", "lr-005", check=False)
        restore(path)
    assert status(path) == set()
