"""End to end: the real `dvc` CLI in a temporary git repo holding a copy of this repository."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from deps import ROOT

pytestmark = pytest.mark.e2e
ALL_STAGES = {"fetch", "split", "scale_encode", "train_linear", "train_numpy_mlp",
              "train_torch_mlp", "overfit_random", "evaluate", "plot_data",
              "plot_model@linear", "plot_model@numpy_mlp", "plot_model@torch_mlp",
              "plot_model@overfit_random"}


def run(cwd, *args, check=True):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NNPIPE_DEBUG", None)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def copy_repo(target) -> None:
    """Tracked and untracked-but-not-ignored files, as a fresh clone plus the work tree."""
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard", "-z").stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    run(target, "git", "init", "-q", "-b", "main")
    run(target, "git", "config", "user.name", "nnpipe tests")
    run(target, "git", "config", "user.email", "tests@nnpipe.invalid")
    run(target, "git", "add", "-A")
    run(target, "git", "commit", "-qm", "copy")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repo after one cold `dvc repro` of the default pipeline."""
    path = tmp_path_factory.mktemp("repo")
    copy_repo(path)
    result = run(path, "dvc", "repro")
    return path, result.stdout + result.stderr


def test_cold_repro_runs_every_stage_and_reproduces_the_committed_results(repo):
    path, output = repo
    assert stages_run(output) == ALL_STAGES
    # dvc.lock, reports/metrics.json, per_class.json, summary.md: byte for byte as committed.
    assert run(path, "git", "status", "--porcelain").stdout == ""


def test_default_metrics_meet_the_lesson(repo):
    path, _ = repo
    metrics = yaml.safe_load((path / "reports/metrics.json").read_text())
    assert metrics["numpy_mlp"]["test"]["accuracy"] >= 0.98
    assert metrics["torch_mlp"]["test"]["accuracy"] >= 0.98
    assert metrics["numpy_mlp"]["val"]["accuracy"] >= 0.98
    assert metrics["torch_mlp"]["val"]["accuracy"] >= 0.98
    assert metrics["linear"]["val"]["accuracy"] <= 0.65
    assert metrics["linear"]["test"]["accuracy"] <= 0.65


def test_second_repro_runs_nothing(repo):
    path, _ = repo
    result = run(path, "dvc", "repro")
    assert stages_run(result.stdout) == set()
    assert "up to date" in result.stdout


def test_metrics_show_lists_every_model(repo):
    path, _ = repo
    shown = run(path, "dvc", "metrics", "show", "--json").stdout
    for model in ("linear", "numpy_mlp", "torch_mlp", "overfit_random"):
        assert f'"{model}"' in shown


def test_changing_split_sizes_reruns_split_and_below_but_not_fetch(repo):
    path, _ = repo
    params_file = path / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["split"]["val_size"], params["split"]["test_size"] = 0.2, 0.1
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = run(path, "dvc", "status", "--json").stdout
        assert set(yaml.safe_load(status)) == {"split", "overfit_random"}
        result = run(path, "dvc", "repro")
        ran = stages_run(result.stdout)
        assert {"split", "scale_encode", "train_torch_mlp", "evaluate"} <= ran
        assert "fetch" not in ran and "plot_data" not in ran
    finally:
        params_file.write_text(original)
        run(path, "dvc", "repro")
        run(path, "git", "checkout", "--", ".")


def test_misspelled_param_added_with_plus_is_rejected_by_the_stage(repo):
    path, _ = repo
    result = run(path, "dvc", "exp", "run", "-S", "+train_torch_mlp.lrr=0.1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown key train_torch_mlp.lrr" in output
    assert "Traceback" not in output
    # DVC removes a stage's outputs before running it; `dvc checkout` brings them back.
    run(path, "git", "checkout", "--", ".")
    run(path, "dvc", "checkout")
    assert (path / "models/torch_mlp/model.pt").is_file()
    assert "up to date" in run(path, "dvc", "status").stdout


def test_predict_answers_from_the_pipeline_artifacts(repo):
    path, _ = repo
    result = run(path, sys.executable, "-m", "nnpipe.predict", "--model", "torch_mlp",
                 "X1=0.1", "X2=0.1")
    assert re.fullmatch(r"The probability that you have c\d is \d+% \(torch_mlp\)\n",
                        result.stdout)


def test_plots_show_renders_curves_confusion_and_every_png(repo):
    path, _ = repo
    run(path, "dvc", "plots", "show")
    html = (path / "dvc_plots/index.html").read_text()
    for model in ("linear", "numpy_mlp", "torch_mlp", "overfit_random"):
        for kind in ("boundary", "curves", "confusion"):
            assert f"reports/figures/{model}_{kind}.png" in html
        assert f"reports/curves/{model}.csv" in html
        assert f"reports/predictions/{model}.csv" in html
    for name in ("data.png", "activations.png"):
        assert f"reports/figures/{name}" in html
    assert run(path, "git", "status", "--porcelain").stdout == ""
