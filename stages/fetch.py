"""fetch: the data set's CSV (a path, the spiral's by default, or a URL) read once and typed:
the typed table (Parquet) and its schema (JSON), after the row policies."""
from __future__ import annotations

import argparse

from nnpipe import params
from nnpipe.core import cli, portable
from nnpipe.core.errors import short


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="typed table (Parquet): features + target")
    parser.add_argument("--schema", required=True,
                        help="schema (JSON): each feature's type and levels, the classes, rows")
    args = parser.parse_args(argv)
    with cli.stage("fetch") as log:
        p = params.load(args.params, "math", "fetch", "data")
        portable.pin(p.math.portable)
        from nnpipe import data, schema, source as sources
        from nnpipe.core import tables  # numpy/torch load here, after pinning
        source = p.fetch.source
        raw = sources.read_source(source, p.fetch.timeout, int(p.fetch.max_mb * 2**20))
        sources.check_sha256(raw, p.fetch.sha256, source)
        typed = data.read_typed(raw, source, p.data.features, p.data.target,
                                p.data.categorical, p.data.missing, p.data.missing_label)
        for note in typed.notes:
            log.info(note)
        tables.write_parquet(args.out, typed.table)
        schema.save(args.schema, typed.schema)
        s = typed.schema
        log.info("%d rows from %s, classes %s%s -> %s", s.rows["kept"], short(source),
                 short(dict(zip(s.classes, s.class_counts)), 200),
                 f", categorical {short(', '.join(s.categorical), 200)}"
                 if s.categorical else "", args.out)


if __name__ == "__main__":
    cli.run_command(main)
