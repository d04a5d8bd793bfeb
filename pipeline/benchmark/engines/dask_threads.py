"""Dask on the threaded scheduler of one process, no distributed cluster.

``summary``: ``dask.dataframe.read_csv`` (only the needed columns, explicit dtypes) and the
project's ``transforms.genre_summary`` on the Dask frame (a per-partition partial and a tree
merge, no shuffle). ``full``: the project's own graph, ``pipeline.job.build``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
from dask.delayed import Delayed

from pipeline import io, job, schema, transforms
from pipeline.benchmark.engines import TOP
from pipeline.config import Config
from pipeline.schema import SUMMARY_INPUT


def blocksize(path: str, threads: int) -> int:
    """Bytes per partition, chosen as ``pipeline.run`` chooses them."""
    return Config().blocksize_for(os.path.getsize(path), threads)


def summary_graph(path: str, threads: int) -> Delayed:
    """The lazy genre summary of every row of the CSV."""
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in SUMMARY_INPUT}
    frame = dd.read_csv(
        path, usecols=list(SUMMARY_INPUT), dtype=dtypes, blocksize=blocksize(path, threads)
    )
    return transforms.genre_summary(frame)


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row, on the threaded scheduler."""
    threads = os.cpu_count() or 1
    (out,) = dask.compute(summary_graph(path, threads), scheduler="threads", num_workers=threads)
    return out


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pipeline's graph (parse, validate, deduplicate, write Parquet, summarise, rank)."""
    threads = os.cpu_count() or 1
    blocks = io.plan_blocks(io.expand_input(path), blocksize(path, threads))
    graph = job.build(blocks, TOP, out_dir)
    (computed,) = dask.compute(graph, scheduler="threads", num_workers=threads)
    result = job.collect(blocks, computed)
    for name, frame in (("genre_summary", result.summary), ("top_tracks", result.top)):
        io.write_csv(frame, Path(out_dir, f"{name}.csv"))
    io.write_csv(result.rejected, Path(out_dir, "rejected_rows.csv"))
    return result.summary, result.top
