"""Build .dvc/plots/page.html: the page `dvc plots show` / `dvc plots diff` fill in, with
vega, vega-lite and vega-embed inlined from vendor/vega/ so the charts draw with no network.

    python vendor/build_plots_page.py          # rewrite .dvc/plots/page.html
    python vendor/build_plots_page.py --check  # exit 1 if it is not what the vendored files give

DVC's own page loads the three libraries from a CDN through its ``{scripts}`` placeholder; this
page has no ``{scripts}``, so nothing remote is referenced (.dvc/config: plots.html_template).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor" / "vega"
PAGE = ROOT / ".dvc" / "plots" / "page.html"
# Load order matters: vega-lite needs vega, vega-embed needs both.
LIBRARIES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")

HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>nnpipe: DVC plots</title>
    <style>
        body { font-family: sans-serif; margin: 16px; }
        body > div { display: inline-block; vertical-align: top; margin: 0 24px 24px 0; }
        img { max-width: 640px; }
        table { border-spacing: 15px; }
    </style>
"""
TAIL = """</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page() -> str:
    scripts = []
    for name in LIBRARIES:
        source = (VENDOR / name).read_text(encoding="utf-8")
        if "</script" in source.lower():
            raise SystemExit(f"{VENDOR / name}: holds '</script', cannot be inlined")
        scripts.append(f"    <script>/* vendor/vega/{name} */\n{source}\n    </script>\n")
    return HEAD + "".join(scripts) + TAIL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        same = PAGE.is_file() and PAGE.read_text(encoding="utf-8") == text
        print(f"{PAGE}: {'up to date' if same else 'out of date: run python vendor/build_plots_page.py'}")
        return 0 if same else 1
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE} ({len(text.encode()) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
