"""README.md and docs/: every page linked exists, and every test a page cites exists."""
from __future__ import annotations

import re

import pytest

from deps import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def cited_tests(text: str) -> list[tuple[str, str]]:
    """(test file, test name) for every ``tests/test_x.py::name`` in ``text``, and every
    ``::name`` that follows one in the same list (``tests/a.py::t1, ::t2``)."""
    found = []
    for chunk in re.findall(r"tests/test_\w+\.py::[\w\[\]\-.,:; =/'\"]+", text):
        current = None
        for part in re.findall(r"(tests/test_\w+\.py)?::(\w+)", chunk):
            current = part[0] or current
            found.append((current, part[1]))
    return found


def test_every_page_the_readme_links_exists():
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))\)", (ROOT / "README.md").read_text())
    assert links, "README links no page"
    assert [link for link in links if not (ROOT / link).is_file()] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_test_a_page_cites_exists(page):
    missing = []
    for path, name in cited_tests(page.read_text()):
        source = ROOT / path
        if not source.is_file() or not re.search(rf"^def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == [], f"{page.name} cites tests that do not exist: {missing}"


def test_cited_tests_reads_lists_of_tests():
    text = "| x | tests/test_a.py::t_one, ::t_two[case]; tests/test_b.py::t_three |"
    assert cited_tests(text) == [("tests/test_a.py", "t_one"), ("tests/test_a.py", "t_two"),
                                 ("tests/test_b.py", "t_three")]


def test_ci_runs_the_readmes_test_command_inside_a_fresh_virtualenv():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^(python -m pip install -r requirements\.txt && python -m pytest)\s",
                        readme, re.MULTILINE).group(1)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith("#")]
    assert ci[-1] == command
    assert ci[-2] == '. "$venv/bin/activate"' and '-m venv "$venv"' in ci[-3], ci[-3:]


def test_the_tables_measured_against_scikit_learn_are_bench_tables_and_a_missing_one_skips(
        capsys):
    from bench import tables

    page = (ROOT / "docs/your-own-data.md").read_text()
    section = page.split("## Against scikit-learn")[1].split("\n## ")[0]
    shown = re.findall(r"^\| (\w+) \(`([\w-]+)`\)", section, re.M)
    assert {(name.lower(), package) for name, package in shown} == \
        {(name, table.package) for name, table in tables.TABLES.items()}
    missing = tables.Table("no_such_package_nnpipe", list, ["x"], "y", "")
    assert tables.measure("mine", missing, []) is None
    assert capsys.readouterr().err == "mine: skipped, it needs `pip install no_such_package_nnpipe`\n"
