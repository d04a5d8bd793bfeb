"""The approach this project replaces: CSV chunks mapped over a ``multiprocessing.Pool``.

The parent parses the CSV in chunks (``pd.read_csv(chunksize=...)``) and sends each chunk to
one of ``os.cpu_count()`` worker processes, which return its additive summary partial; the
parent merges the partials. Summary only: the old script did no cleaning or deduplication.
"""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd

from pipeline import schema, transforms
from pipeline.schema import SUMMARY_INPUT

CHUNK_ROWS = 100_000  # the old script used 1,000, which mostly measured pickling


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row: chunks parsed here, aggregated in a process pool."""
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in SUMMARY_INPUT}
    chunks = pd.read_csv(path, usecols=list(SUMMARY_INPUT), dtype=dtypes, chunksize=CHUNK_ROWS)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        parts = list(pool.imap(transforms.summary_partial, chunks))
    return transforms.finalize_summary(transforms.merge_summaries(parts))
