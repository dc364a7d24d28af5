"""Typed tables between stages: Parquet files (Arrow), written atomically, read with one-line
errors, and as the pandas DataFrames scikit-learn takes."""
from __future__ import annotations

import os
from typing import Any, Sequence

from nnpipe.core import files
from nnpipe.core.errors import PipelineError


def arrow() -> Any:
    """pyarrow, its thread pool as large as this process's CPUs (the math pins set
    OMP_NUM_THREADS=1, which Arrow would take as its size): parsing and Parquet coding give
    the same bytes on any number of threads."""
    import pyarrow as pa

    cpus = len(os.sched_getaffinity(0))
    if pa.cpu_count() != cpus:
        pa.set_cpu_count(cpus)
    return pa


def write_parquet(path: str, table: Any) -> None:
    """An Arrow table as Parquet (no pandas metadata, no timestamps: the same bytes each run;
    no column statistics: 15% of the write).

    Text and label columns are dictionary-encoded; numbers are stored plain: a column of
    measurements rarely repeats a value, and trying a dictionary first costs a third of the
    write (0.2 s of 0.6 s for 10M rows of two floats). Arrow writes the temp file itself, by
    path: coding into memory and copying that out took as long again, and through a Python
    file object each write waits for the GIL (which a NumPy shuffle beside it holds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [field.name for field in table.schema if not pa.types.is_floating(field.type)]
    with files.atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(None), tmp, use_dictionary=text,
                       write_statistics=False)  # min/max: no reader here filters on them
        files.fsync(tmp)


def read_parquet(path: str, columns: Sequence[str] = ()) -> Any:
    """The ``columns`` (default: all) of a Parquet file this pipeline wrote, as an Arrow table;
    they must all be there. (``ParquetFile.read``: a fifth of ``read_table``'s time, which
    goes through the datasets layer.)"""
    import pyarrow.parquet as pq

    pa = arrow()
    if not os.path.exists(path):
        raise PipelineError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise PipelineError(f"{path}: not a regular file")
    try:
        with pq.ParquetFile(path) as parquet:
            absent = [name for name in columns if name not in parquet.schema_arrow.names]
            table = None if absent else parquet.read(columns=list(columns) or None)
    except (pa.ArrowException, OSError) as exc:
        raise PipelineError(f"{path}: not a readable Parquet file "
                            f"({str(exc).strip().splitlines()[0][:120]})") from None
    if absent:
        raise PipelineError(f"{path}: column '{absent[0]}' not found; re-run fetch")
    return table


def to_frame(table: Any, columns: Sequence[str]) -> Any:
    """The ``columns`` as a pandas DataFrame: numbers float64 (NaN where missing), text as
    objects (NaN where missing)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    out = {}
    for name in columns:
        values = table[name]
        if pa.types.is_floating(values.type):
            out[name] = values.to_numpy()  # null -> NaN
        else:
            text = np.asarray(values.to_pylist(), dtype=object)
            text[np.equal(text, None)] = np.nan
            out[name] = text
    return pd.DataFrame(out, columns=list(columns), copy=False)  # the arrays, not a copy
