"""A synthetic table shaped like the Palmer penguins (344 rows, 3 species): four measurements
with distinct means per species, two text columns (``island``, ``sex``), a ``year`` of
numbers, and a few missing cells written as ``NA`` or left empty. Made here from a seed, so
tests own every value (no download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MEASUREMENTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
FEATURES = [*MEASUREMENTS, "island", "sex"]
TARGET = "species"
# species -> (rows per island, (mean, sd) per measurement)
SPECIES = {
    "Adelie": ({"Biscoe": 44, "Dream": 56, "Torgersen": 52},
               [(38.8, 2.3), (18.3, 1.2), (190.0, 6.5), (3700.0, 460.0)]),
    "Chinstrap": ({"Dream": 68}, [(48.8, 2.6), (18.4, 1.1), (195.8, 7.1), (3730.0, 380.0)]),
    "Gentoo": ({"Biscoe": 124}, [(47.5, 2.5), (15.0, 1.0), (217.2, 6.5), (5080.0, 500.0)]),
}
# (row, column) -> how the missing cell is written; the first two rows lose every measurement
GAPS = {**{(3, m): "NA" for m in MEASUREMENTS}, **{(271, m): "" for m in MEASUREMENTS},
        (3, "sex"): "NA", (8, "sex"): "", (9, "sex"): "NA", (10, "sex"): "NA",
        (11, "sex"): "", (47, "sex"): "NA", (178, "sex"): "NA", (218, "sex"): "",
        (256, "sex"): "NA", (268, "sex"): "NA", (286, "sex"): "", (40, "bill_depth_mm"): "NA",
        (120, "flipper_length_mm"): ""}


def frame(seed: int = 0) -> pd.DataFrame:
    """The table as text cells, in the palmerpenguins column order (344 rows)."""
    rng = np.random.RandomState(seed)
    rows = []
    for species, (islands, stats) in SPECIES.items():
        for island, count in islands.items():
            for _ in range(count):
                male = rng.rand() < 0.5
                shift = 0.4 if male else -0.4  # males are larger, by 0.4 sd
                values = [mean + sd * (rng.randn() + shift) for mean, sd in stats]
                rows.append({"species": species, "island": island,
                             "bill_length_mm": f"{values[0]:.1f}",
                             "bill_depth_mm": f"{values[1]:.1f}",
                             "flipper_length_mm": str(int(round(values[2]))),
                             "body_mass_g": str(int(round(values[3] / 25) * 25)),
                             "sex": "male" if male else "female",
                             "year": str(2007 + int(rng.randint(3)))})
    table = pd.DataFrame(rows)
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for (row, column), text in GAPS.items():
        table.loc[row, column] = text
    return table


def write(path: Path, seed: int = 0) -> Path:
    """The table as a CSV file (missing cells as ``NA`` or empty)."""
    path.write_text(frame(seed).to_csv(index=False, lineterminator="\n"))
    return path


# One raw row as predict takes it (NAME=VALUE): the table's features, every cell present.
RAW_ROW = {"island": "Biscoe", "sex": "female", "bill_length_mm": "45", "bill_depth_mm": "15",
           "flipper_length_mm": "215", "body_mass_g": "5000"}


def row_args(**changes: str) -> list[str]:
    return [f"{k}={v}" for k, v in {**RAW_ROW, **changes}.items()]
