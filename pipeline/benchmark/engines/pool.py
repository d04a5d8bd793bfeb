"""The approach this project replaces: CSV chunks mapped over a ``multiprocessing.Pool``.

The parent parses the CSV in chunks (``pd.read_csv(chunksize=...)``) and sends each chunk to
one of ``os.cpu_count()`` worker processes, which return its partial (per genre, the
primitives of the summary's statistics that merge: rows, sums, counts, minimum and maximum,
the distinct artists); the parent merges the partials. The kernels are the pipeline's own
(:mod:`pipeline.summary`), so what differs is the architecture: one parser, chunks pickled to
the workers. Summary only: the old script did no cleaning or deduplication.
"""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd

from pipeline import schema
from pipeline.summary import MERGEABLE, finish, inputs, merge, partial

CHUNK_ROWS = 100_000  # the old script used 1,000, which mostly measured pickling


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row: chunks parsed here,
    aggregated in a process pool."""
    names = inputs(MERGEABLE)
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in names}
    chunks = pd.read_csv(path, usecols=list(names), dtype=dtypes, chunksize=CHUNK_ROWS)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        parts = list(pool.imap(partial, chunks))  # the old script's process_chunk
    return finish(merge(pd.concat(parts, ignore_index=True)))
