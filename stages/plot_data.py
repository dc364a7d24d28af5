"""plot_data: the data by class and the activation functions, as PNGs."""
from __future__ import annotations

import argparse

from nnpipe.core import cli, params, portable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="CSV written by fetch")
    parser.add_argument("--data-png", required=True)
    parser.add_argument("--activations-png", required=True)
    args = parser.parse_args(argv)
    with cli.stage("plot_data") as log:
        p = params.load(args.params, "math", "data", "plot")
        portable.pin(p.math.portable)
        import numpy as np  # numpy/torch load here, after pinning
        from nnpipe import plots
        from nnpipe.core import files
        features = list(p.data.features)
        frame = files.read_csv(args.data, text_columns=(p.data.target,))
        X = frame[features].to_numpy(np.float64)
        labels = frame[p.data.target].to_numpy(str)
        files.save_figure(args.data_png, plots.data_by_class(X, labels, features,
                                                          p.plot.max_points))
        files.save_figure(args.activations_png, plots.activations())
        log.info("wrote %s, %s", args.data_png, args.activations_png)


if __name__ == "__main__":
    cli.run_command(main)
