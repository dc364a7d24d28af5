"""Benchmark of the pipeline on this machine, every number measured in one run.

    python bench/run.py            # default pipeline: cold, floor, no-op, incremental
    python bench/run.py --scale    # also 10k / 100k / 1M / 10M rows, the data stages against
                                   # one pandas.read_csv, and the NumPy-vs-torch epoch ratio
    python bench/run.py --math native   # the same with math.portable: false (native kernels)
    python bench/run.py --math-cost     # only: portable vs native kernels, s/epoch at 1M rows
    python bench/run.py --live-cost     # only: DVCLive's cost, per run and per logged step

It clones the committed HEAD (uncommitted changes are not measured) with a warm-server directory of
its own (the cold run starts with no server); the table goes to reports/benchmark.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nnpipe.core.cli import STATS_ENV  # noqa: E402  (the stages append their wall time and RSS there)
import minimal  # noqa: E402  (bench/minimal.py: the no-op's yardstick)
TARGETS = {"cold / floor": 1.9, "warm re-run / floor": 1.5, "incremental / floor": 0.75,
           "no-op / minimal pipeline's no-op": 1.0, "max stage peak RSS (MB)": 450.0}
NOOP_RUNS = 5
SCALE_ROWS = {"10k": 3_334, "100k": 33_334, "1M": 333_334, "10M": 3_333_334}  # per class, 3 classes
DATA_STAGES = ("fetch", "split", "scale_encode")  # measured against one pandas.read_csv
READ_CSV = "import time, pandas as pd; t = time.perf_counter(); pd.read_csv({path!r}); " \
    "print(time.perf_counter() - t)"
SCALE_PARAMS = {  # mini-batch training with epochs chosen to fit the 5-minute budget at 1M rows
    "train_linear": {"batch_size": 1024, "epochs": 2, "log_every": 1},
    "train_numpy_mlp": {"batch_size": 1024, "epochs": 3, "log_every": 1},
    "train_torch_mlp": {"batch_size": 1024, "epochs": 3, "log_every": 1},
}


WARM_ENV: dict[str, str] = {}  # main() points NNPIPE_WARM_DIR at the benchmark's own directory
MATH: dict[str, dict] = {}  # main(): {"math": {"portable": ...}}, set in every clone's params


def sh(cwd: Path, *args: str, env: dict | None = None) -> float:
    """Run a command to completion; return its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, **WARM_ENV, **(env or {})})
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def clone(target: Path, overrides: dict | None = None) -> Path:
    sh(ROOT, "git", "clone", "-q", str(ROOT), str(target))
    sh(target, "git", "config", "user.name", "bench")
    sh(target, "git", "config", "user.email", "bench@nnpipe.invalid")
    overrides = {**MATH, **(overrides or {})}
    params = yaml.safe_load((target / "params.yaml").read_text())
    if any(params[section] != {**params[section], **values}
           for section, values in overrides.items()):
        for section, values in overrides.items():
            params[section].update(values)
        (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh(target, "git", "commit", "-qam", "bench params")
    return target


def repro_with_stats(repo: Path) -> tuple[float, list[dict]]:
    stats_file = repo.parent / f"{repo.name}-stats.jsonl"
    # --force: a fresh clone holds the committed figures and curves (in git), so a plain
    # repro would skip the plot stages; the floor runs every stage, so must this.
    wall = sh(repo, "dvc", "repro", "--force", env={STATS_ENV: str(stats_file)})
    stats = [json.loads(line) for line in stats_file.read_text().splitlines()]
    return wall, stats


def stop_warm_servers() -> None:
    sh(ROOT, sys.executable, "-m", "stages", "--stop")


def default_pipeline(tmp: Path) -> tuple[dict, list[dict]]:
    """Cold (forced) repro with no warm server yet; a forced re-run with the server it started;
    no-op, alternated with the minimal twin's (bench/minimal.py); the incremental loop with
    that server (as after any earlier run), then once more after stopping it."""
    stop_warm_servers()
    cold_repo = clone(tmp / "cold")
    cold, stages = repro_with_stats(cold_repo)
    rerun = sh(cold_repo, "dvc", "repro", "-f")
    twin = minimal.build(cold_repo, tmp / "minimal")  # side by side, alternating
    noops, twin_noops = (sorted(runs) for runs in zip(*[
        (sh(cold_repo, "dvc", "repro"), sh(twin, "dvc", "repro")) for _ in range(NOOP_RUNS)]))
    incremental = sh(cold_repo, "dvc", "exp", "run", "-S", "train_torch_mlp.lr=0.001")
    stop_warm_servers()
    incremental_cold = sh(cold_repo, "dvc", "exp", "run", "-S", "train_torch_mlp.lr=0.002")
    stop_warm_servers()
    floor = sh(clone(tmp / "floor"), sys.executable, "bench/floor.py")
    noop, twin_noop = noops[NOOP_RUNS // 2], twin_noops[NOOP_RUNS // 2]
    summary = {"cold dvc repro (s)": cold, "warm re-run, dvc repro -f (s)": rerun,
               "in-process floor (s)": floor, "no-op (s), median of 5": noop,
               "no-op (s), min / max": (noops[0], noops[-1]),
               "no-op, minimal DVC pipeline of the same shape (s), median of 5": twin_noop,
               "no-op / minimal pipeline's no-op": noop / twin_noop,
               "incremental exp run (s)": incremental,
               "incremental exp run, warm server stopped first (s)": incremental_cold,
               "cold / floor": cold / floor, "warm re-run / floor": rerun / floor,
               "incremental / floor": incremental / floor,
               "incremental (server stopped) / floor": incremental_cold / floor,
               "max stage peak RSS (MB)": max(s["peak_rss_mb"] for s in stages)}
    return summary, stages


EPOCH_CODE = """
import json, sys, time
sys.path.insert(0, ".")
from nnpipe import params; from nnpipe.core import portable
portable.pin({portable})  # as the stages do, before numpy and torch load
import numpy as np
from nnpipe import numpy_mlp, preprocess, torch_models, training
state = preprocess.load("data/processed/preprocess.json")
data = training.load_train_data("data/processed/train.npz", "data/processed/val.npz", state)
p = params.load("params.yaml", "train_torch_mlp", "train_numpy_mlp")
seconds = {{}}
for name in ("train_numpy_mlp", "train_torch_mlp"):
    hp = p[name].model_copy(update={{"epochs": {epochs}, "batch_size": {batch}, "log_every": 10**9}})
    start = time.perf_counter()
    training.fit(name, hp, state, data, 0)
    seconds[name] = (time.perf_counter() - start) / {epochs}
print(json.dumps({{"numpy s/epoch": seconds["train_numpy_mlp"],
                  "torch s/epoch": seconds["train_torch_mlp"], "train rows": len(data.y_train)}}))
"""


def epoch_seconds(repo: Path, portable: bool, epochs: int = 2) -> dict:
    """Seconds per epoch of the NumPy and torch MLPs (as params.yaml defines them, mini-batch)
    on ``repo``'s processed splits, with portable or native kernels."""
    code = EPOCH_CODE.format(portable=portable, epochs=epochs,
                             batch=SCALE_PARAMS["train_torch_mlp"]["batch_size"])
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def epoch_ratio(repo: Path) -> dict:
    """The NumPy and torch MLPs' seconds per epoch on the same 1M-row data and batch size."""
    found = epoch_seconds(repo, MATH["math"]["portable"])
    return {**found, "numpy / torch": found["numpy s/epoch"] / found["torch s/epoch"]}


def math_cost(tmp: Path, rounds: int = 3) -> dict:
    """Portable vs native kernels at 1M rows: seconds per epoch of each MLP, the modes
    alternated ``rounds`` times in one run (the median of each is kept)."""
    repo = clone(tmp / "math-cost", {"spiral": {"samples_per_class": SCALE_ROWS["1M"]}})
    sh(repo, "dvc", "repro", "scale_encode")
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(rounds):
        for portable in (True, False):
            runs[portable].append(epoch_seconds(repo, portable))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    cost = {}
    for model in ("torch", "numpy"):
        portable_s = median([r[f"{model} s/epoch"] for r in runs[True]])
        native_s = median([r[f"{model} s/epoch"] for r in runs[False]])
        cost[model] = {"portable s/epoch": portable_s, "native s/epoch": native_s,
                       "portable / native": portable_s / native_s}
    return cost


def start_warm_server(repo: Path) -> None:
    """The first launch starts the server (and runs in-process); the second waits for it.
    Run in ``repo``: its params (math.portable) decide which server the stages will use."""
    for _ in range(2):
        sh(repo, sys.executable, "-m", "stages", "fetch", "--help")


def scale(tmp: Path) -> tuple[dict[str, dict], dict, dict]:
    per_size: dict[str, dict] = {}
    totals: dict[str, dict] = {}
    for label, per_class in SCALE_ROWS.items():
        overrides = {"spiral": {"samples_per_class": per_class}, **SCALE_PARAMS}
        repo = clone(tmp / f"scale-{label}", overrides)
        if not per_size:
            start_warm_server(repo)  # every size then runs under the same conditions
        wall, stages = repro_with_stats(repo)
        per_size[label] = {s["stage"]: s for s in stages}
        read = subprocess.run([sys.executable, "-c", READ_CSV.format(path="data/spiral.csv")],
                              cwd=repo, capture_output=True, text=True, check=True)
        data_s = sum(per_size[label][name]["wall_s"] for name in DATA_STAGES)
        totals[label] = {"wall": wall, "peak": max(s["peak_rss_mb"] for s in stages),
                         "read_csv": float(read.stdout), "data": data_s,
                         "source": per_size[label]["spiral"]["wall_s"]}
    return per_size, totals, epoch_ratio(tmp / "scale-1M")


def render(summary: dict, stages: list[dict], scaled: tuple | None) -> str:
    mode = "portable" if MATH["math"]["portable"] else "native"
    lines = ["## Benchmark", "", f"`python bench/run.py{' --scale' if scaled else ''} --math "
             f"{mode}` (math.portable: {str(mode == 'portable').lower()}) on "
             f"{os.cpu_count()} cores; all numbers from one run.", "",
             "| measure | value | target |", "|---|---:|---:|"]
    for key, value in summary.items():
        target = TARGETS.get(key)
        mark = "" if target is None else (f"≤ {target:g} " + ("✓" if value <= target else "✗"))
        shown = " / ".join(f"{v:.2f}" for v in value) if isinstance(value, tuple) \
            else f"{value:.2f}"
        lines.append(f"| {key} | {shown} | {mark} |")
    lines += ["", "Cold `dvc repro`, per stage (wall time and peak RSS of the process that ran the "
              "stage: the launcher itself, or its fork of the warm server):", "",
              "| stage | wall (s) | peak RSS (MB) |", "|---|---:|---:|"]
    lines += [f"| {s['stage']} | {s['wall_s']:.2f} | {s['peak_rss_mb']:.0f} |" for s in stages]
    if scaled:
        per_size, totals, ratio = scaled
        labels = list(per_size)
        lines += ["", "Scale (mini-batch training, params in bench/run.py SCALE_PARAMS):", "",
                  "| stage | " + " | ".join(f"{l} (s)" for l in labels)
                  + f" | ×10 growth (max) | peak RSS at {labels[-1]} (MB) |",
                  "|---|" + "---:|" * (len(labels) + 2)]
        worst_growth = 0.0
        for stage in per_size[labels[0]]:
            times = [per_size[l][stage]["wall_s"] for l in labels]
            growth = max(b / a for a, b in zip(times, times[1:]))
            worst_growth = max(worst_growth, growth)
            lines.append(f"| {stage} | " + " | ".join(f"{t:.2f}" for t in times)
                         + f" | {growth:.1f} | {per_size[labels[-1]][stage]['peak_rss_mb']:.0f} |")
        lines.append("| **whole `dvc repro`** | " + " | ".join(
            f"{totals[l]['wall']:.1f}" for l in labels) + " | | |")
        lines.append("| whole, less the spiral stage (the source) | " + " | ".join(
            f"{totals[l]['wall'] - totals[l]['source']:.1f}" for l in labels) + " | | |")
        lines.append("| one `pandas.read_csv` of the source | " + " | ".join(
            f"{totals[l]['read_csv']:.2f}" for l in labels) + " | | |")
        lines.append("| fetch + split + scale_encode / read_csv | " + " | ".join(
            f"{totals[l]['data'] / totals[l]['read_csv']:.1f}" for l in labels) + " | | |")
        big = totals["10M"]
        lines += ["", f"- 10M rows: fetch + split + scale_encode {big['data']:.1f} s, "
                  f"{big['data'] / big['read_csv']:.1f}x one pandas.read_csv of the source "
                  f"({big['read_csv']:.2f} s; target ≤ 10x); whole pipeline less the source's "
                  f"generation {big['wall'] - big['source']:.0f} s (target ≤ 120), max stage "
                  f"peak RSS {big['peak']:.0f} MB."]
        lines += [f"- 1M rows: whole pipeline {totals['1M']['wall']:.0f} s (target ≤ 300), "
                  f"max stage peak RSS {totals['1M']['peak']:.0f} MB (target ≤ 2048); "
                  f"worst per-stage growth per 10× rows {worst_growth:.1f}× (target ≤ 12).",
                  f"- NumPy MLP vs torch MLP, same architecture and batch size, "
                  f"{ratio['train rows']} train rows: {ratio['numpy s/epoch']:.2f} vs "
                  f"{ratio['torch s/epoch']:.2f} s/epoch, ratio {ratio['numpy / torch']:.2f} "
                  "(target ≤ 1.5)."]
    return "\n".join(lines) + "\n"


def render_math_cost(cost: dict) -> str:
    lines = ["## Portable math: cost", "", f"`python bench/run.py --math-cost` on "
             f"{os.cpu_count()} cores: seconds per epoch at {SCALE_ROWS['1M'] * 3:,} rows (70% train), "
             f"batch {SCALE_PARAMS['train_torch_mlp']['batch_size']}, median of 3 rounds with "
             "the two modes alternated, all from one run.", "",
             "| model | portable s/epoch | native s/epoch | portable / native |",
             "|---|---:|---:|---:|"]
    lines += [f"| {model} MLP | {c['portable s/epoch']:.2f} | {c['native s/epoch']:.2f} | "
              f"{c['portable / native']:.2f} |" for model, c in cost.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="store_true", help="also run 10k/100k/1M/10M rows")
    parser.add_argument("--math", choices=("portable", "native"), default="portable",
                        help="math.portable in every clone (default: portable, as params.yaml)")
    parser.add_argument("--math-cost", action="store_true",
                        help="only compare portable and native kernels' s/epoch at 1M rows")
    parser.add_argument("--live-cost", action="store_true",
                        help="only measure DVCLive's cost per logged step")
    parser.add_argument("--out", help="default: reports/benchmark.md (portable), "
                        "reports/benchmark-native.md or reports/benchmark-math.md")
    args = parser.parse_args()
    if args.live_cost:
        return print(__import__("live_cost").live_cost())  # bench/live_cost.py
    MATH["math"] = {"portable": args.math == "portable"}
    name = "benchmark-math.md" if args.math_cost else \
        "benchmark.md" if args.math == "portable" else "benchmark-native.md"
    out = args.out or str(ROOT / "reports" / name)
    with tempfile.TemporaryDirectory(prefix="nnpipe-bench-") as tmp:
        WARM_ENV["NNPIPE_WARM_DIR"] = str(Path(tmp) / "warm")  # no server from elsewhere
        try:
            if args.math_cost:
                table = render_math_cost(math_cost(Path(tmp)))
            else:
                summary, stages = default_pipeline(Path(tmp))
                scaled = scale(Path(tmp)) if args.scale else None
                table = render(summary, stages, scaled)
        finally:
            stop_warm_servers()
    print(table)
    Path(out).write_text(table)


if __name__ == "__main__":
    main()
