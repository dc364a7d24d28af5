"""End to end: the real `dvc` CLI in a temporary git repo holding a copy of this repository.

The module's one full repro of the default pipeline is the suite's check that the committed
dvc.lock, metrics, curves and figures come back byte for byte; the other tests here reuse it
to check what makes a stage out of date. tests/test_experiments.py drives `dvc exp`.
"""
from __future__ import annotations

import json
import re
import sys

import pandas as pd
import pytest
import yaml
from deps import ROOT, code_deps, resolve_stages
from e2e_util import CHECK, copy_repo, restore, run, stages_run, status
from pipeline import MODELS, STAGES

pytestmark = pytest.mark.slow
ALL_STAGES = set(STAGES)
RESOLVED = resolve_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()))


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
        assert re.fullmatch(rf"predicted: \w+ \(\d+%, {model}\)\n",
                            result.stdout)


def test_plots_show_renders_curves_confusion_and_every_png(repo):
    """What is on the page (tests/test_browser.py checks that it draws, offline)."""
    path, _ = repo
    run(path, "dvc", "plots", "show")
    html = (path / "dvc_plots/index.html").read_text()
    for model in MODELS:
        for kind in ("boundary", "curves", "confusion"):
            assert f"reports_figures_{model}_{kind}.png" in html
        assert f"reports/curves/{model}" in html  # DVCLive's curves, one chart per model
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
    raw = (path / "data/spiral.csv").read_text().splitlines(keepends=True)
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
        assert len(pd.read_parquet(path / "data/table.parquet")) == 799
        assert {"scale_encode", "plot_data"} <= status(path)  # the cascade follows
    finally:
        mine.unlink()
        restore(path)
    assert status(path) == set()
