"""The preprocessing state, two ways, measured side by side (docs/performance.md):

    python bench/prepstate.py

(a) nnpipe.preprocess: small steps whose state is JSON, transforming with NumPy;
(b) scikit-learn's own fitted ColumnTransformer and LabelEncoder persisted with skops
    (``pip install skops``; not a requirement of the pipeline).
On the spiral (2 numeric inputs) and on a mixed table (2 numeric + 2 categorical inputs with
gaps, data.missing=median, data.handle_unknown=ignore): load time, transform time of 1 row and
of 1M rows, file size, and whether both give the same bytes. Best of 5 (1M rows: of 2).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnpipe import preprocess  # noqa: E402
from nnpipe.data import make_spiral  # noqa: E402


def mixed(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({"size": rng.randn(n) * 3 + 40, "depth": rng.randn(n) + 17,
                          "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n).astype(object),
                          "year": rng.choice(["2007", "2008", "2009"], n).astype(object)})
    frame.loc[rng.rand(n) < 0.05, "size"] = np.nan
    frame.loc[rng.rand(n) < 0.05, "island"] = np.nan
    return frame


def cases() -> dict[str, tuple]:
    """name -> (train table, labels, inputs, categorical, missing, handle_unknown, 1M-row table)."""
    X, labels = make_spiral(350, ("c1", "c2", "c3"), 0.2, 1234)
    spiral = pd.DataFrame(X, columns=["X1", "X2"])
    big = pd.DataFrame(np.random.RandomState(1).randn(1_000_000, 2), columns=["X1", "X2"])
    table = mixed(1050, 0)
    return {"spiral": (spiral, labels, ("X1", "X2"), (), "error", "error", big),
            "mixed table": (table, np.array(list("abc" * 350)), tuple(table.columns),
                            ("island", "year"), "median", "ignore", mixed(1_000_000, 2))}


def best(run, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(directory: str, case: tuple) -> dict:
    train, labels, inputs, categorical, missing, unknown, big = case
    state = preprocess.fit(train, labels, inputs, rows=len(train), categorical=categorical,
                           missing=missing, handle_unknown=unknown)
    path = os.path.join(directory, "preprocess.json")
    preprocess.save(path, state)
    loaded = preprocess.load(path)
    return {"load": best(lambda: preprocess.load(path)), "bytes": os.path.getsize(path),
            "1 row": best(lambda: loaded.transform(big.iloc[:1])),
            "1M rows": best(lambda: loaded.transform(big), 2), "out": loaded.transform(big)}


def skops_way(directory: str, case: tuple) -> dict:
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

    train, labels, inputs, categorical, missing, unknown, big = case
    impute = missing in preprocess.IMPUTE
    numeric = [name for name in inputs if name not in categorical]
    one_hot = OneHotEncoder(handle_unknown=unknown, sparse_output=False, dtype=np.float64)
    parts = [("numeric", make_pipeline(*[SimpleImputer(strategy=missing)] * impute,
                                       StandardScaler()), numeric),
             ("categorical", make_pipeline(*[SimpleImputer(strategy="most_frequent")] * impute,
                                           one_hot), list(categorical))]
    frame = preprocess.table(train, inputs, categorical)
    fitted = {"columns": ColumnTransformer([p for p in parts if p[2]], sparse_threshold=0.0,
                                           verbose_feature_names_out=False).fit(frame),
              "labels": LabelEncoder().fit(labels)}
    path = os.path.join(directory, "preprocess.skops")
    sio.dump(fitted, path)
    untrusted = sio.get_untrusted_types(file=path)  # what a loader must vouch for by name

    def load():
        return sio.load(path, trusted=untrusted)

    model = load()["columns"]
    big_frame = preprocess.table(big, inputs, categorical)
    return {"load": best(load), "bytes": os.path.getsize(path), "untrusted": len(untrusted),
            "1 row": best(lambda: model.transform(preprocess.table(big.iloc[:1], inputs,
                                                                   categorical))),
            "1M rows": best(lambda: model.transform(preprocess.table(big, inputs, categorical)), 2),
            "out": model.transform(big_frame)}


def main() -> None:
    rows = ["| case | way | load (ms) | 1 row (ms) | 1M rows (s) | file (bytes) | same bytes |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in cases().items():
            a, b = ours(tmp, case), skops_way(tmp, case)
            same = a["out"].tobytes() == np.ascontiguousarray(b["out"]).tobytes()
            for way, r in (("(a) steps, JSON", a), (f"(b) skops ({b['untrusted']} types "
                                                      "to trust by name)", b)):
                rows.append(f"| {name} | {way} | {r['load'] * 1e3:.2f} | {r['1 row'] * 1e3:.2f} "
                            f"| {r['1M rows']:.2f} | {r['bytes']} | {same} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
