"""spiral: the lesson's 3-class spiral (its spiral.csv), regenerated offline from a seed."""
from __future__ import annotations

from nnpipe import data
from nnpipe.core import files

PARAMS = ("spiral", "seed")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="CSV: X1, X2, color")


def run(args, p) -> str:
    frame = data.spiral_frame(p.spiral.samples_per_class, p.spiral.classes, p.spiral.noise, p.seed)
    files.write_csv(args.out, frame)
    return f"{len(frame)} rows, classes {list(p.spiral.classes)} -> {args.out}"
