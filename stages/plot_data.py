"""plot_data: the data by class (its first two numeric features, as the schema types them) and
the activation functions, as PNGs."""
from __future__ import annotations

import logging

import numpy as np

from nnpipe import plots, schema
from nnpipe.core import files, tables

PARAMS = ("plot",)
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="typed table (Parquet) written by fetch")
    parser.add_argument("--schema", required=True, help="its schema (JSON)")
    parser.add_argument("--data-png", required=True)
    parser.add_argument("--activations-png", required=True)


def run(args, p) -> str:
    typed = schema.load(args.schema)
    numeric = typed.numeric[:2]
    table = tables.read_parquet(args.data, (*numeric, typed.target))
    X = np.column_stack([table[name].to_numpy() for name in numeric]) if numeric else \
        np.empty((table.num_rows, 0))
    labels = np.asarray(typed.classes)[schema.class_codes(table[typed.target], typed.classes,
                                                          args.data)]
    figure, note = plots.data_figure(X, labels, numeric, p.plot.max_points)
    if note:
        log.info(note)
    files.save_figure(args.data_png, figure)
    files.save_figure(args.activations_png, plots.activations())
    return f"wrote {args.data_png}, {args.activations_png}"
