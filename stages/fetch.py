"""fetch: the data set's CSV (a path, the spiral's by default, or a URL) read once and typed:
the typed table (Parquet) and its schema (JSON), after the row policies."""
from __future__ import annotations

import logging

from nnpipe import data, schema, source as sources
from nnpipe.core import tables
from nnpipe.core.errors import short

PARAMS = ("fetch", "data.features", "data.target", "data.categorical", "data.missing",
          "data.missing_label")
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="typed table (Parquet): features + target")
    parser.add_argument("--schema", required=True,
                        help="schema (JSON): each feature's type and levels, the classes, rows")


def run(args, p) -> str:
    source = p.fetch.source
    raw = sources.read_source(source, p.fetch.timeout, int(p.fetch.max_mb * 2**20))
    sources.check_sha256(raw, p.fetch.sha256, source)
    typed = data.read_typed(raw, source, p.data.features, p.data.target, p.data.categorical,
                            p.data.missing, p.data.missing_label)
    for note in typed.notes:
        log.info(note)
    tables.write_parquet(args.out, typed.table)
    schema.save(args.schema, typed.schema)
    s = typed.schema
    categorical = f", categorical {short(', '.join(s.categorical), 200)}" if s.categorical else ""
    return (f"{s.rows['kept']} rows from {short(source)}, classes "
            f"{short(dict(zip(s.classes, s.class_counts)), 200)}{categorical} -> {args.out}")
