"""`dvc plots show` and `dvc plots diff` pages, opened in headless Chromium with no network.

Every vega chart must draw (marks on its canvas) and the console must stay free of errors; a
screenshot of each page is saved under the test's temp dir. The pages are built by the real
`dvc` CLI in a copy of the repository: every plotted file is in git, so no stage runs.
Skipped when this machine has no Chromium (CI installs Debian's `chromium`: .ci/run).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import browser
from e2e_util import copy_repo, run
from pipeline import MODELS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser.chromium() is None, reason="no Chromium here (Debian: apt-get "
                       "install chromium; .ci/run does it in CI)"),
    pytest.mark.skipif(not browser.can_isolate(), reason="cannot cut the network (unshare -n)"),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repo with two commits: as committed, then a second torch_mlp experiment's
    curves and predictions (as `dvc exp run` would leave them; every plotted file is in git)."""
    path = tmp_path_factory.mktemp("plots")
    copy_repo(path)
    for name in ("train_loss", "val_loss"):  # DVCLive's files of torch_mlp: step, figure
        curves = path / f"reports/curves/torch_mlp/plots/metrics/{name}.tsv"
        lines = curves.read_text().splitlines()
        changed = [lines[0]] + [f"{step}\t{float(value) * 1.5}"
                                for step, value in (line.split("\t") for line in lines[1:])]
        curves.write_text("\n".join(changed) + "\n")
    predictions = path / "reports/predictions/torch_mlp.csv"
    rows = predictions.read_text().splitlines()
    predictions.write_text("\n".join(rows[:1] + [re.sub(r",c1$", ",c2", r) for r in rows[1:]])
                           + "\n")
    run(path, "git", "commit", "-qam", "a second experiment")
    return path


def _page(repo: Path, *args: str, out: str) -> Path:
    run(repo, "dvc", "plots", *args, "-o", out)
    return repo / out / "index.html"


def _check(page: Path, tmp_path: Path, name: str) -> browser.Rendered:
    html = page.read_text(encoding="utf-8")
    # nothing remote: no script, stylesheet or font is fetched from elsewhere
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@font-face|@import", html)
    assert "cdn.jsdelivr.net" not in html and "{scripts}" not in html
    shown = browser.render(page, tmp_path / f"{name}.png", tmp_path / f"{name}-profile")
    print(f"screenshot: {shown.screenshot}")
    assert shown.charts >= 2 * len(MODELS), shown  # per model: curves, confusion
    assert (shown.embedded, shown.drawn) == (shown.charts, shown.charts), shown
    assert shown.errors == [], shown.errors
    assert shown.images and None not in shown.images.values(), shown.images  # every PNG drew
    assert shown.screenshot.stat().st_size > 10_000
    return shown


def test_plots_show_draws_every_chart_offline(repo, tmp_path):
    page = _page(repo, "show", out="show")
    shown = _check(page, tmp_path, "show")
    html = page.read_text(encoding="utf-8")
    for model in MODELS:
        assert f"reports/curves/{model}" in html  # one curves chart per model
        assert f"reports/predictions/{model}.csv" in html  # one confusion matrix per model
        for kind in ("boundary", "curves", "confusion"):
            assert f"reports_figures_{model}_{kind}.png" in html  # every PNG figure
    assert shown.charts == 2 * len(MODELS)


def test_plots_diff_draws_every_chart_offline_with_both_revisions(repo, tmp_path):
    page = _page(repo, "diff", "HEAD~1", "HEAD", out="diff")
    _check(page, tmp_path, "diff")
    shown = json.loads(run(repo, "dvc", "plots", "diff", "HEAD~1", "HEAD", "--json").stdout)
    curves = shown["data"]["reports/curves/torch_mlp"][0]["content"]
    assert curves["spec"]["encoding"]["strokeDash"]["field"] == "rev"  # a line style per revision
    assert {r["rev"] for r in curves["data"]["values"]} == {"HEAD~1", "HEAD"}
    confusion = shown["data"]["reports/predictions/torch_mlp.csv"][0]["content"]
    assert confusion["facet"]["column"]["field"] == "rev"  # a matrix per revision


def test_curves_are_one_chart_per_model_in_two_colours_named_by_model_and_split(repo):
    shown = json.loads(run(repo, "dvc", "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    curves = [k for k in shown["data"] if k.startswith("reports/curves/")]
    assert sorted(curves) == sorted(f"reports/curves/{m}" for m in MODELS)
    content = shown["data"]["reports/curves/overfit_random"][0]["content"]
    assert content["resolve"]["scale"]["y"] == "independent"  # loss and accuracy: own scales
    assert content["facet"]["column"]["field"] == "metric"
    assert content["spec"]["encoding"]["color"]["field"] == "series"
    model = next(t["calculate"] for t in content["transform"] if t["as"] == "model")
    assert "reports/curves/overfit_random" in model
    # every chart of the page comes from the top-level plots: no stage adds a default one
    assert set(shown["data"]) == set(curves) | {
        k for k in shown["data"] if k.startswith(("reports/predictions/", "reports/figures/"))}

