"""Dask on the threaded scheduler of one process, no distributed cluster.

``summary``: ``dask.dataframe.read_csv`` (only the needed columns, explicit dtypes) and the
project's ``summary.genre_summary`` on the Dask frame (Arrow partials merged in a tree, no
shuffle). ``full``: the project's own graph, ``pipeline.job.build``, and its outputs.
"""

from __future__ import annotations

import os

import dask
import dask.dataframe as dd
import pandas as pd

from pipeline import job, schema
from pipeline.benchmark.engines import TOP
from pipeline.blocks import expand_input, plan_input
from pipeline.config import Config
from pipeline.execute import write_outputs
from pipeline.outputs import SUMMARY_CSV, TOP_CSV
from pipeline.publish import Transaction
from pipeline.summary import MERGEABLE, genre_summary, inputs


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row, on the threaded scheduler."""
    threads = os.cpu_count() or 1
    names = inputs(MERGEABLE)
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in names}
    blocksize = Config().blocksize_for(os.path.getsize(path), threads)  # as pipeline.run
    frame = dd.read_csv(path, usecols=list(names), dtype=dtypes, blocksize=blocksize)
    (out,) = dask.compute(genre_summary(frame, MERGEABLE), scheduler="threads")
    return out


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pipeline's graph (parse, validate, deduplicate, write Parquet, summarise, rank) and
    its outputs, written and published as the run does them."""
    plan = plan_input(expand_input(path), Config(), os.cpu_count() or 1)
    with Transaction(out_dir) as tx:
        work = tx.path("_attempt-0")
        built = job.build(plan, TOP, work)
        result = job.collect(built, list(dask.compute(*built.collections(), scheduler="threads")))
        write_outputs(result, work, tx)
        tx.publish()
    return result.frames[SUMMARY_CSV], result.frames[TOP_CSV]
