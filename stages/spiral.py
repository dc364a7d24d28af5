"""spiral: the lesson's 3-class spiral (its spiral.csv), regenerated offline from a seed."""
from __future__ import annotations

import argparse

from nnpipe import params
from nnpipe.core import cli, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="CSV: X1, X2, color")
    args = parser.parse_args(argv)
    with cli.stage("spiral") as log:
        p = params.load(args.params, "seed", "math", "spiral")
        portable.pin(p.math.portable)
        from nnpipe import data  # numpy/torch load here, after pinning
        from nnpipe.core import files
        frame = data.spiral_frame(p.spiral.samples_per_class, p.spiral.classes, p.spiral.noise,
                                  p.seed)
        files.write_csv(args.out, frame)
        log.info("%d rows, classes %s -> %s", len(frame), list(p.spiral.classes), args.out)


if __name__ == "__main__":
    cli.run_command(main)
