"""vendor/vega: pinned vega, vega-lite and vega-embed with their licenses, inlined into the
page template `dvc plots` uses (.dvc/plots/page.html, set in .dvc/config)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from deps import ROOT

VENDOR = ROOT / "vendor" / "vega"
PINNED = {"vega": "5.33.0", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_library_is_the_pinned_version_with_its_license(name):
    source = (VENDOR / f"{name}.min.js").read_text(encoding="utf-8")
    assert f'"{PINNED[name]}"' in source, name  # the version string the bundle carries
    assert "Copyright" in (VENDOR / f"LICENSE.{name}").read_text(encoding="utf-8")
    assert f"{name}@{PINNED[name]}" in (VENDOR / "README.md").read_text(encoding="utf-8")


def test_the_committed_page_is_built_from_the_vendored_libraries():
    result = subprocess.run([sys.executable, "vendor/build_plots_page.py", "--check"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert re.search(r"html_template\s*=\s*plots/page.html", (ROOT / ".dvc/config").read_text())
    page = (ROOT / ".dvc/plots/page.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # no CDN scripts from DVC
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@font-face|@import", page)


def test_check_fails_when_a_library_changes(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "vendor"))
    import build_plots_page

    monkeypatch.setattr(build_plots_page, "PAGE", tmp_path / "page.html")
    assert build_plots_page.main(["--check"]) == 1  # missing
    assert build_plots_page.main([]) == 0
    assert build_plots_page.main(["--check"]) == 0
    (tmp_path / "page.html").write_text("stale")
    assert build_plots_page.main(["--check"]) == 1
