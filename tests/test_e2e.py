"""End to end: the real `dvc` CLI in a temporary git repo holding a copy of this repository.

The module's one full repro of the default pipeline is the suite's check that the committed
dvc.lock, metrics, curves and figures come back byte for byte; every other test reuses it.
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

from deps import ROOT, code_deps, resolve_stages
from e2e_util import copy_repo, run, stages_run, terminal
from pipeline import MODELS, REGISTRY, STAGES

pytestmark = pytest.mark.slow
CHECK = {"check_params"}  # depends on params.yaml's bytes: any edit of it re-runs the check
ALL_STAGES = set(STAGES)
RESOLVED = resolve_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()))


def status(path) -> set[str]:
    """The stages `dvc status` lists, from DVC's Python API: the same answer as the CLI,
    without a process per call."""
    import contextlib

    from dvc.repo import Repo

    with contextlib.chdir(path), Repo(".") as repo:
        return set(repo.status())


def restore(path) -> None:
    run(path, "git", "checkout", "--", ".")
    run(path, "dvc", "checkout", "--quiet")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repo after one cold `dvc repro --force` of the default pipeline: every
    stage runs, also those whose committed outputs (figures, curves) a plain repro would keep."""
    path = tmp_path_factory.mktemp("repo")
    copy_repo(path)
    result = run(path, "dvc", "repro", "--force")
    return path, result.stdout + result.stderr


def test_cold_repro_runs_every_stage_and_reproduces_the_committed_results(repo):
    path, output = repo
    assert stages_run(output) == ALL_STAGES
    # dvc.lock and every committed output (metrics, curves, figures): byte for byte.
    assert run(path, "git", "status", "--porcelain").stdout == ""


def test_default_metrics_meet_the_lesson(repo):
    path, _ = repo
    metrics = json.loads((path / "reports/metrics.json").read_text())
    for mlp in ("numpy_mlp", "torch_mlp"):
        assert metrics[mlp]["test"]["accuracy"] >= 0.98 and metrics[mlp]["val"]["accuracy"] >= 0.98
    assert metrics["linear"]["val"]["accuracy"] <= 0.65
    assert metrics["linear"]["test"]["accuracy"] <= 0.65
    overfit = metrics["overfit_random"]
    assert overfit["train"]["accuracy"] - overfit["test"]["accuracy"] >= 0.3


def test_second_repro_runs_nothing(repo):
    path, _ = repo
    result = run(path, "dvc", "repro")
    assert stages_run(result.stdout) == set()
    assert "up to date" in result.stdout and status(path) == set()


def test_metrics_show_lists_every_model(repo):
    path, _ = repo
    shown = json.loads(run(path, "dvc", "metrics", "show", "--json").stdout)
    metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert set(metrics) == set(MODELS)


def test_predict_answers_from_the_pipeline_artifacts(repo):
    path, _ = repo
    for model in MODELS:
        result = run(path, sys.executable, "-m", "nnpipe.predict", "--model", model,
                     "X1=0.1", "X2=0.1")
        assert re.fullmatch(rf"The probability that you have \w+ is \d+% \({model}\)\n",
                            result.stdout)


def test_plots_show_renders_curves_confusion_and_every_png(repo):
    """What is on the page (tests/test_browser.py checks that it draws, offline)."""
    path, _ = repo
    run(path, "dvc", "plots", "show")
    html = (path / "dvc_plots/index.html").read_text()
    for model in MODELS:
        for kind in ("boundary", "curves", "confusion"):
            assert f"reports_figures_{model}_{kind}.png" in html
        assert f"reports/curves/{model}.csv" in html
        assert f"reports/predictions/{model}.csv" in html
    for name in ("data.png", "activations.png"):
        assert f"reports_figures_{name}" in html
    assert "cdn.jsdelivr.net" not in html
    assert run(path, "git", "status", "--porcelain").stdout == ""


# --- what makes a stage out of date --------------------------------------------------------

def param_keys(params: dict) -> list[str]:
    return [k if not isinstance(v, dict) else f"{k}.{kk}"
            for k, v in params.items() for kk in (v if isinstance(v, dict) else [None])]


def readers(key: str) -> set[str]:
    """The stages dvc.yaml declares as reading ``key`` (itself or its whole section)."""
    section = key.split(".")[0]
    return {name for name, body in RESOLVED.items()
            if {key, section} & set(body.get("params", []))}


def test_every_param_key_makes_exactly_its_stages_out_of_date(repo):
    path, _ = repo
    params_file = path / "params.yaml"
    original = params_file.read_text()
    expected = {key: readers(key) | CHECK for key in param_keys(yaml.safe_load(original))}
    assert expected["math.portable"] == ALL_STAGES  # every stage computes with it
    expected.pop("fetch.source")  # also a dep: test_editing_the_data_sets_csv_reruns_fetch
    try:
        for key, stages in expected.items():
            assert stages - CHECK, f"{key} is read by no stage"
            params = yaml.safe_load(original)
            if "." in key:
                section, name = key.split(".")
                params[section][name] = "__changed__"
            else:
                params[key] = 4321
            params_file.write_text(yaml.safe_dump(params, sort_keys=False))
            assert status(path) == stages, key
    finally:
        params_file.write_text(original)
    assert status(path) == set()


def test_editing_a_module_makes_exactly_its_importers_out_of_date(repo):
    path, _ = repo
    scripts = {name: ROOT / "stages" / f"{stage.module.split('.')[1]}.py"
               for name, stage in STAGES.items()}
    modules = ["nnpipe/core/params.py"] + sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "nnpipe").glob("*.py")
        if p.name != "__init__.py")  # docstring only (test_dvc_yaml.py)
    for module in modules:
        owner = "nnpipe/core" if module.startswith("nnpipe/core/") else module
        expected = {name for name, script in scripts.items() if owner in code_deps(script)}
        target = path / module
        original = target.read_text()
        target.write_text(original + "\n# touched by test_e2e\n")
        try:
            assert status(path) == expected, module
        finally:
            target.write_text(original)


def test_editing_the_data_sets_csv_reruns_fetch_and_below(repo):
    """fetch.source is a dependency: a user's CSV edited in place makes fetch out of date."""
    path, _ = repo
    raw = (path / "data/raw.csv").read_text().splitlines(keepends=True)
    mine = path / "data/mine.csv"
    mine.write_text("".join(raw))
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["fetch"]["source"] = "data/mine.csv"
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = run(path, "dvc", "repro", "check_params", "fetch")
        assert stages_run(result.stdout) == {"fetch"} | CHECK
        assert status(path) == set()  # the same bytes as before: nothing below is out of date
        mine.write_text("".join(raw[:800]))  # fewer rows
        assert status(path) == {"fetch"}
        assert "modified:           data/mine.csv" in run(path, "dvc", "status").stdout
        assert stages_run(run(path, "dvc", "repro", "split").stdout) == {"fetch", "split"}
        assert len((path / "data/raw.csv").read_text().splitlines()) == 800
        assert {"scale_encode", "plot_data"} <= status(path)  # the cascade follows
    finally:
        mine.unlink()
        restore(path)
    assert status(path) == set()


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
        loss = plots["data"]["reports/curves/torch_mlp.csv"][0]
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
    """The README's "Add a model" recipe: its params.yaml block and its dvc.yaml block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Add a model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    params, dvc = (yaml.safe_load(b) for b in blocks[:2])
    return params, dvc


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            for target, item in zip(into[key], value):
                if isinstance(item, dict):
                    _merge(target, item)
            into[key] += [item for item in value if not isinstance(item, dict)]
        else:
            into[key] = value


def test_readme_recipe_adds_a_fifth_model_without_python(repo):
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
        assert f"({name})" in served.stdout
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
