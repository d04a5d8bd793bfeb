"""The engines: *what* is measured, one module each, with the same function names.

Every engine module defines::

    summary(path: str, phases: dict[str, float]) -> pd.DataFrame

the genre summary's statistics that merge (``summary.MERGEABLE``: the group-by of the study;
no medians), one row per genre, sorted, of every row of the CSV as read, reading only the
columns it needs; and, when it does everything ``python -m pipeline.run`` does, also::

    full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]

the whole summary (``summary.SUMMARY``, medians included) and top tracks of the validated,
deduplicated rows, with those rows written as
Parquet partitioned by genre under ``out_dir/tracks``. An engine with fixed costs around its
work (a cluster) records their seconds in ``phases`` as ``startup`` and ``shutdown``; the runner
times everything else. Engines never time themselves otherwise and never check their answers.

The ``read`` workload is not an engine's function: the same queries
(:mod:`pipeline.benchmark.queries`) over the dataset each engine's ``full`` wrote.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType
from typing import TypeVar

# Engine name -> module; the core engines first, pandas (the reference) at their head.
ENGINES: Mapping[str, str] = {
    "pandas": "pipeline.benchmark.engines.pandas_c",
    "pandas-pyarrow": "pipeline.benchmark.engines.pandas_pyarrow",
    "pool": "pipeline.benchmark.engines.pool",
    "dask-threads": "pipeline.benchmark.engines.dask_threads",
    "dask": "pipeline.benchmark.engines.dask_cluster",
    "dask-limited": "pipeline.benchmark.engines.dask_limited",
    "polars": "pipeline.benchmark.engines.polars_lazy",
    "duckdb": "pipeline.benchmark.engines.duckdb_sql",
}
CORE: tuple[str, ...] = ("pandas", "pandas-pyarrow", "pool", "dask-threads", "dask")
OPTIONAL: tuple[str, ...] = ("polars", "duckdb")  # the `bench` extra; skipped when absent
WORKLOADS: tuple[str, ...] = ("summary", "full", "read")
QUERIES = "pipeline.benchmark.queries"  # the read workload, over every engine's dataset
REFERENCE = "pandas"  # every answer is checked against this engine's

TOP = 10  # top tracks per genre, as `pipeline.run` by default

T = TypeVar("T")


def load(module: str) -> ModuleType:
    """Import an engine module; ``ModuleNotFoundError`` names a library it needs that is not
    installed (an engine module that does not exist at all raises ``ImportError``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            raise ImportError(f"no engine module {module}") from err
        raise


@contextmanager
def timed_session(session: AbstractContextManager[T], phases: dict[str, float]) -> Iterator[T]:
    """Enter and leave ``session``, recording the seconds of each as startup and shutdown."""
    start = time.perf_counter()
    with session as value:
        phases["startup"] = time.perf_counter() - start
        yield value
        start = time.perf_counter()
    phases["shutdown"] = time.perf_counter() - start
