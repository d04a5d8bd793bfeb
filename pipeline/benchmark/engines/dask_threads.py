"""Dask on the threaded scheduler of one process, no distributed cluster.

``summary``: ``dask.dataframe.read_csv`` (only the needed columns, explicit dtypes) and the
project's ``transforms.genre_summary`` on the Dask frame (a groupby-aggregation in a tree, no
shuffle). ``full``: the project's own graph, ``pipeline.job.build``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd

from pipeline import job, schema, transforms
from pipeline.benchmark.engines import TOP
from pipeline.blocks import expand_input, plan_input
from pipeline.config import Config
from pipeline.publish import write_csv
from pipeline.schema import SUMMARY_INPUT
from pipeline.storage import remove_tree


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row, on the threaded scheduler."""
    threads = os.cpu_count() or 1
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in SUMMARY_INPUT}
    blocksize = Config().blocksize_for(os.path.getsize(path), threads)  # as pipeline.run
    frame = dd.read_csv(path, usecols=list(SUMMARY_INPUT), dtype=dtypes, blocksize=blocksize)
    (out,) = dask.compute(transforms.genre_summary(frame), scheduler="threads")
    return out


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pipeline's graph (parse, validate, deduplicate, write Parquet, summarise, rank)."""
    plan = plan_input(expand_input(path), Config(), os.cpu_count() or 1)
    outputs = job.build(plan, TOP, out_dir)
    result = job.collect(list(dask.compute(*outputs.collections(), scheduler="threads")))
    remove_tree(f"{out_dir}/scratch")
    for name, frame in (("genre_summary", result.summary), ("top_tracks", result.top)):
        write_csv(frame, str(Path(out_dir, f"{name}.csv")))
    write_csv(result.rejected, str(Path(out_dir, "rejected_rows.csv")))
    return result.summary, result.top
