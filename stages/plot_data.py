"""plot_data: the data by class (its first two numeric features) and the activation functions,
as PNGs."""
from __future__ import annotations

import argparse

from nnpipe.core import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="CSV written by fetch")
    parser.add_argument("--data-png", required=True)
    parser.add_argument("--activations-png", required=True)
    args = parser.parse_args(argv)
    with cli.stage("plot_data") as log:
        p = params.load(args.params, "math", "data", "plot")
        portable.pin(p.math.portable)
        from nnpipe import plots  # numpy/torch load here, after pinning
        from nnpipe.core import files
        frame = files.read_csv(args.data, text_columns=(p.data.target, *p.data.categorical))
        figure, note = plots.data_figure(frame, p.data.features, p.data.categorical,
                                         p.data.target, p.plot.max_points, source=args.data)
        if note:
            log.info(note)
        files.save_figure(args.data_png, figure)
        files.save_figure(args.activations_png, plots.activations())
        log.info("wrote %s, %s", args.data_png, args.activations_png)


if __name__ == "__main__":
    cli.run_command(main)
