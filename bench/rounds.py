"""The data stages at 10M rows, round after round: how much the ratio to one read_csv moves.

    python bench/rounds.py [ROUNDS]   # default 5

One clone of the committed HEAD with the spiral at 10M rows and the warm server running (as
``bench/run.py --scale`` runs it); then, each round, ``dvc repro -f -s`` of fetch, split and
scale_encode, each stage's wall time as it records it, and one ``pandas.read_csv`` of the
same source timed in a process of its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench  # bench/run.py

ROWS_PER_CLASS = bench.SCALE_ROWS["10M"]


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="nnpipe-rounds-") as tmp:
        bench.WARM_ENV["NNPIPE_WARM_DIR"] = str(Path(tmp) / "warm")
        bench.MATH["math"] = {"portable": True}
        repo = bench.clone(Path(tmp) / "10M", {"spiral": {"samples_per_class": ROWS_PER_CLASS}})
        try:
            bench.start_warm_server(repo)
            bench.sh(repo, "dvc", "repro", "scale_encode")
            print("| round | " + " | ".join(bench.DATA_STAGES) + " | sum | read_csv | ratio |")
            print("|---:|" + "---:|" * (len(bench.DATA_STAGES) + 3))
            for n in range(1, rounds + 1):
                stats = Path(tmp) / f"round-{n}.jsonl"
                for stage in bench.DATA_STAGES:
                    bench.sh(repo, "dvc", "repro", "-f", "-s", stage,
                             env={bench.STATS_ENV: str(stats)})
                wall = {s["stage"]: s["wall_s"]
                        for s in map(json.loads, stats.read_text().splitlines())}
                read = float(subprocess.run(
                    [sys.executable, "-c", bench.READ_CSV.format(path="data/spiral.csv")],
                    cwd=repo, capture_output=True, text=True, check=True).stdout)
                total = sum(wall.values())
                print(f"| {n} | " + " | ".join(f"{wall[s]:.2f}" for s in bench.DATA_STAGES) +
                      f" | {total:.2f} | {read:.2f} | {total / read:.1f} |", flush=True)
        finally:
            bench.stop_warm_servers()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
