"""Dask on an input larger than its workers' memory: ``python -m pipeline.run`` with one worker
process of 2 threads held to 600 MiB (Python and the libraries alone take about 300 MiB of
it), partitions sized from that limit (11.25 MiB). Only the ``full`` workload; the worker's
limit, peak and spilled bytes come from the run's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

# first of the heavy imports: dask_cluster imports pandas, Dask and the run as the command does
from pipeline.benchmark.engines.dask_cluster import run_cli

if TYPE_CHECKING:
    import pandas as pd

MEMORY_LIMIT = "600MiB"
OPTIONS = ("--processes", "--workers", "1", "--threads-per-worker", "2")


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run with limited workers; records their memory figures in ``phases``."""
    outputs = run_cli(path, out_dir, phases, *OPTIONS, "--memory-limit", MEMORY_LIMIT)
    workers = json.loads(Path(out_dir, "manifest.json").read_text())["workers"].values()
    phases["worker_limit_mb"] = sum(w["memory_limit_mb"] for w in workers)
    phases["worker_peak_mb"] = max(w["peak_rss_mb"] for w in workers)
    phases["spilled_mb"] = sum(w["spilled_mb"] for w in workers)
    return outputs
