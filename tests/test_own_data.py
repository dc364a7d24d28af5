"""A user's own table end to end: the real `dvc exp run -S ...` on a penguin-like CSV with text
columns and missing cells (tests/penguins.py), every model of the registry trained on it, and
`python -m nnpipe.predict` serving raw rows (text, gaps, a category never seen).

The copy first leaves the lesson's demo out as docs/your-own-data.md says (dvc.yaml's blocks
between "# demo >>>" and "# <<< demo" deleted, overfit_random's committed curves and figures
removed). Two experiments in it: missing cells imputed (median) with unknown categories encoded
as zeros, then rows with a missing cell dropped with unknown categories refused (what such a
model refuses: the contract table, tests/test_reliability.py). The spiral's committed results
are checked byte for byte by tests/test_e2e.py.
"""
from __future__ import annotations

import json
import re
import sys

import pytest

import browser
import penguins
from e2e_util import copy_repo, run, stages_run
from pipeline import REGISTRY

pytestmark = pytest.mark.slow
SPIRAL_DATA = "data/processed"  # the fetched data set's processed splits (dvc.yaml spiral_dir)
OWN_MODELS = [m for m, data in REGISTRY.items() if data == SPIRAL_DATA]
ROW = {"island": "Biscoe", "sex": "female", "bill_length_mm": "47", "bill_depth_mm": "15",
       "flipper_length_mm": "217", "body_mass_g": "5000"}  # a Gentoo
SENTENCE = re.compile(r"predicted: (\w+) \((\d+)%, (\w+)\)\n")


def exp_run(path, missing: str, unknown: str) -> str:
    """`dvc exp run` on the table with params alone; its output."""
    features = ",".join(penguins.FEATURES)
    result = run(path, "dvc", "exp", "run", "-S", "fetch.source=penguins.csv",
                 "-S", f"data.features=[{features}]", "-S", f"data.target={penguins.TARGET}",
                 "-S", f"data.missing={missing}", "-S", f"data.handle_unknown={unknown}")
    return result.stdout + result.stderr


def predict(path, model: str, **changes: str):
    args = [f"{k}={v}" for k, v in {**ROW, **changes}.items()]
    return run(path, sys.executable, "-m", "nnpipe.predict", "--model", model, *args,
               check=False)


def accuracies(path) -> dict[str, float]:
    metrics = json.loads((path / "reports/metrics.json").read_text())
    return {m: metrics[m]["test"]["accuracy"] for m in OWN_MODELS}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("own")
    copy_repo(path)
    run(path, "sed", "-i", "/# demo >>>/,/# <<< demo/d", "dvc.yaml")  # docs/your-own-data.md
    run(path, "git", "rm", "-rq", "reports/curves/overfit_random", *(
        f"reports/figures/overfit_random_{kind}.png" for kind in ("boundary", "curves", "confusion")))
    penguins.write(path / "penguins.csv")
    run(path, "git", "add", "penguins.csv", "dvc.yaml")
    run(path, "git", "commit", "-qm", "a table of our own, without the lesson's demo")
    return path


@pytest.fixture(scope="module")
def imputed(repo):
    return repo, exp_run(repo, "median", "ignore")


def test_imputed_table_trains_every_model_to_the_tables_accuracy(imputed):
    path, output = imputed
    assert {"fetch", "split", "scale_encode", *(f"train@{m}" for m in OWN_MODELS)} \
        <= stages_run(output)
    state = json.loads((path / SPIRAL_DATA / "preprocess.json").read_text())
    assert state["missing"] == "median" and set(state["encoder"]["categories"]) == {"island",
                                                                                   "sex"}
    for model in OWN_MODELS:
        config = json.loads((path / "models" / model / "config.json").read_text())
        assert config["model"]["input_dim"] == 4 + 3 + 2, model
    reached = accuracies(path)
    print("median/ignore test accuracy:", reached)
    assert not {"spiral", "random_data", "train@overfit_random"} & stages_run(output)
    assert all(accuracy >= 0.95 for accuracy in reached.values()), reached
    assert "decision boundary not drawn" in output


@pytest.mark.skipif(browser.chromium() is None or not browser.can_isolate(),
                    reason="no Chromium here, or cannot cut the network (tests/test_browser.py)")
def test_the_page_shows_per_class_curves_where_the_boundary_cannot_be_drawn(imputed, tmp_path):
    """Six features, two of them text: each model's boundary PNG is its per-class ROC and
    precision-recall on test, and `dvc plots show`'s page draws it offline with every chart."""
    path, _ = imputed
    run(path, "dvc", "plots", "show", "-o", str(tmp_path / "page"))
    shown = browser.render(tmp_path / "page/index.html", tmp_path / "page.png",
                           tmp_path / "profile")
    print(f"screenshot: {shown.screenshot}")
    assert (shown.embedded, shown.drawn) == (shown.charts, shown.charts) and shown.charts
    assert shown.errors == [], shown.errors
    for model in OWN_MODELS:  # static/workspace_reports_figures_<model>_boundary.png
        (size,) = [size for src, size in shown.images.items()
                   if src.endswith(f"_reports_figures_{model}_boundary.png")]
        assert size == [1200, 500], shown.images  # not the 600x150 placeholder


def test_without_the_demo_every_report_shows_only_the_users_models(imputed):
    path, _ = imputed
    for report in ("headline.json", "metrics.json", "per_class.json"):
        assert sorted(json.loads((path / "reports" / report).read_text())) == sorted(OWN_MODELS)
    assert "overfit_random" not in (path / "reports/summary.md").read_text()
    workspace = json.loads(run(path, "dvc", "exp", "show", "--json").stdout)[0]
    assert workspace["rev"] == "workspace"
    headline = workspace["data"]["metrics"]["reports/headline.json"]["data"]
    assert sorted(headline) == sorted(OWN_MODELS)  # the first columns of `dvc exp show`
    assert "overfit_random" not in json.dumps(workspace["data"]["metrics"])
    plots = json.loads(run(path, "dvc", "plots", "show", "--json").stdout)
    assert not plots.get("errors") and plots["data"]
    assert not [name for name in plots["data"] if "overfit_random" in name]


def test_predict_serves_raw_rows_with_a_gap_and_an_unseen_category(imputed):
    path, _ = imputed
    for model in OWN_MODELS:
        for changes in ({}, {"sex": "NA", "bill_depth_mm": ""}, {"island": "Atlantis"}):
            result = predict(path, model, **changes)
            warned = "island" in changes and result.stderr.startswith(
                "predict: warning: feature 'island': category 'Atlantis' was not in the train")
            assert result.returncode == 0 and (warned or result.stderr == ""), result.stderr
            match = SENTENCE.fullmatch(result.stdout)
            assert match and match.group(3) == model, result.stdout
            assert match.group(1) == "Gentoo", (model, changes, result.stdout)


@pytest.fixture(scope="module")
def dropped(imputed):
    path, _ = imputed
    return path, exp_run(path, "drop", "error")


def test_dropped_rows_are_counted_and_every_model_still_learns(dropped):
    path, output = dropped
    removed = sum(1 for row in penguins.frame().itertuples()
                  if any(getattr(row, f) in ("", "NA") for f in penguins.FEATURES))
    assert f"data.missing=drop dropped {removed} rows with a missing feature" in output
    reached = accuracies(path)
    print("drop/error test accuracy:", reached)
    assert all(accuracy >= 0.95 for accuracy in reached.values()), reached
    # A good row is served; what the model refuses: tests/test_reliability.py, rows predict-own_*.
    assert SENTENCE.fullmatch(predict(path, OWN_MODELS[0]).stdout)


def test_a_queued_experiment_refuses_a_source_never_committed(tmp_path):
    """`dvc exp run --queue` runs from a copy of the last commit: a CSV only in the workspace
    is not there, and check_params says to commit it. The spiral's CSV, an output DVC makes
    later in that copy, passes (the experiment then fails at fetch, on a feature it lacks)."""
    copy_repo(tmp_path)
    penguins.write(tmp_path / "mine.csv")
    run(tmp_path, "dvc", "exp", "run", "--queue", "-n", "mine", "-S", "fetch.source=mine.csv")
    run(tmp_path, "dvc", "exp", "run", "--queue", "-n", "spiral", "-S", "data.features=[X1,X9]")
    result = run(tmp_path, "dvc", "exp", "run", "--run-all", check=False)
    logs = {name: run(tmp_path, "dvc", "queue", "logs", name).stdout for name in ("mine", "spiral")}
    assert "Failed to reproduce experiment(s)" in result.stderr  # both; yet it exits 0
    assert ("check_params: error: mine.csv: not in the queued experiment's copy of the "
            "repository (fetch.source), which holds the last commit only: commit it (git add "
            "and git commit, or dvc add and git commit) or give an absolute path\n") in logs["mine"]
    assert "Running stage 'fetch'" not in logs["mine"]
    assert "check_params: params.yaml: every section valid" in logs["spiral"]
    assert "fetch: error:" in logs["spiral"] and "X9" in logs["spiral"]


def typed_table() -> str:
    """90 rows: x a number (one cell whitespace only), flag true/false, answer true/false and
    one maybe, labels 01, 1 and 10 (x near 0, 5 and 10), one label missing."""
    rows = ["x,flag,answer,label"]
    for i in range(90):
        label = ("01", "1", "10")[i % 3]
        x = " " if i == 4 else f"{5 * (i % 3) + (i % 7) / 10:g}"
        answer = "maybe" if i == 11 else ("true", "false")[i % 2]
        rows.append(f"{x},{'true' if label == '1' else 'false'},{answer},{'' if i == 7 else label}")
    return "\n".join(rows) + "\n"


def test_types_decided_once_hold_through_dvc_exp_run_and_predict(tmp_path):
    """true/false stay the text "true"/"false" (in every split and at predict); a category only
    train has (maybe) is not an all-zero row elsewhere; labels 01, 1 and 10 are three classes;
    a whitespace-only cell is missing; a missing label is refused, or its row dropped."""
    copy_repo(tmp_path)
    (tmp_path / "typed.csv").write_text(typed_table())
    run(tmp_path, "git", "add", "typed.csv")
    run(tmp_path, "git", "commit", "-qm", "a typed table")
    common = ["-S", "fetch.source=typed.csv", "-S", "data.features=[x,flag,answer]",
              "-S", "data.target=label", "-S", "data.missing=median",
              "-S", "data.handle_unknown=error"]
    refused = run(tmp_path, "dvc", "exp", "run", *common, check=False)
    assert refused.returncode != 0
    assert ("fetch: error: typed.csv: column 'label' row 9 has no label; set "
            "data.missing_label to drop to drop such rows") in refused.stderr + refused.stdout
    run(tmp_path, "git", "checkout", "params.yaml")
    output = run(tmp_path, "dvc", "exp", "run", *common, "-S", "data.missing_label=drop")
    assert "data.missing_label=drop dropped 1 rows with no label" in output.stderr + output.stdout
    schema = json.loads((tmp_path / "data/schema.json").read_text())
    assert schema["target"] == {"name": "label", "classes": ["01", "1", "10"],
                                "counts": [30, 29, 30]}
    assert schema["features"] == [
        {"name": "x", "type": "numeric", "missing": 1},
        {"name": "flag", "type": "categorical", "levels": ["false", "true"], "missing": 0},
        {"name": "answer", "type": "categorical", "levels": ["false", "maybe", "true"],
         "missing": 0}]
    import numpy as np
    import pandas as pd

    state = json.loads((tmp_path / SPIRAL_DATA / "preprocess.json").read_text())
    answer = [i for i, name in enumerate(state["features"]) if name.startswith("answer_")]
    for split in ("train", "val", "test"):
        X = np.load(tmp_path / SPIRAL_DATA / f"{split}.npz")["X"]
        assert (X[:, answer].sum(axis=1) == 1).all(), split  # never an all-zero row
    maybe_in = [s for s in ("train", "val", "test") if "maybe" in
                pd.read_parquet(tmp_path / f"data/split/{s}.parquet")["answer"].tolist()]
    assert maybe_in == ["train"]
    for model in OWN_MODELS:
        result = run(tmp_path, sys.executable, "-m", "nnpipe.predict", "--model", model,
                     "x=5.1", "flag=true", "answer=true", check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("predicted: 1 ("), result.stdout  # not "01" or "10"
        whole = run(tmp_path, sys.executable, "-m", "nnpipe.predict", "--model", model,
                    "--input", "typed.csv", check=False)
        assert whole.returncode == 0 and len(whole.stdout.splitlines()) == 91, whole.stderr
