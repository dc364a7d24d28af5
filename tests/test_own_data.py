"""A user's own table end to end: the real `dvc exp run -S ...` on a penguin-like CSV with text
columns and missing cells (tests/penguins.py), every model of the registry trained on it, and
`python -m nnpipe.predict` serving raw rows (text, gaps, a category never seen).

Two experiments in one copy of the repository: missing cells imputed (median) with unknown
categories encoded as zeros, then rows with a missing cell dropped with unknown categories
refused. The spiral's committed results are checked byte for byte by tests/test_e2e.py.
"""
from __future__ import annotations

import json
import re
import sys

import pytest

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
    penguins.write(path / "penguins.csv")
    run(path, "git", "add", "penguins.csv")
    run(path, "git", "commit", "-qm", "a table of our own")
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
    assert all(accuracy >= 0.95 for accuracy in reached.values()), reached
    assert "decision boundary skipped" in output


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
    assert f"after data.missing=drop removed {removed} rows with missing cells" in output
    reached = accuracies(path)
    print("drop/error test accuracy:", reached)
    assert all(accuracy >= 0.95 for accuracy in reached.values()), reached


@pytest.mark.parametrize("changes, fragment", [
    ({"island": "Atlantis"}, "feature 'island': category 'Atlantis' was not in the train split"),
    ({"sex": "NA"}, "feature 'sex' is missing; a missing value needs a model trained with "
                    "data.missing=mean, median or most_frequent (this one: data.missing=drop)"),
], ids=["unseen_category", "gap"])
def test_a_model_trained_to_refuse_says_so_in_one_line(dropped, changes, fragment):
    path, _ = dropped
    result = predict(path, OWN_MODELS[0], **changes)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("predict: error: ") and fragment in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert SENTENCE.fullmatch(predict(path, OWN_MODELS[0]).stdout)
