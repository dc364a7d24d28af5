"""fetch: the data set's CSV (a path, the spiral's by default, or a URL), validated, to one CSV."""
from __future__ import annotations

import argparse

from nnpipe.core import cli, params, portable
from nnpipe.core.errors import short


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="validated CSV: feature columns + target")
    args = parser.parse_args(argv)
    with cli.stage("fetch") as log:
        p = params.load(args.params, "math", "fetch", "data")
        portable.pin(p.math.portable)
        from nnpipe import data, source as sources
        from nnpipe.core import files  # numpy/torch load here, after pinning
        source = p.fetch.source
        raw = sources.read_source(source, p.fetch.timeout, int(p.fetch.max_mb * 2**20))
        sources.check_sha256(raw, p.fetch.sha256, source)
        frame = data.parse_csv(raw, source, text_columns=p.data.categorical)
        checked = data.validate_frame(frame, p.data.features, p.data.target, source,
                                      p.data.categorical, p.data.missing)
        files.write_csv(args.out, checked.frame)
        log.info("%d rows from %s, classes %s%s -> %s", len(checked.frame), short(source),
                 short(checked.class_counts, 200),
                 f", categorical {short(', '.join(checked.categorical), 200)}"
                 if checked.categorical else "", args.out)


if __name__ == "__main__":
    cli.run_command(main)
