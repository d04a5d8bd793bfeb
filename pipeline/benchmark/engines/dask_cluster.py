"""Dask exactly as ``python -m pipeline.run`` runs by default: a local distributed cluster.

The cluster's start and stop are fixed costs, reported apart from the work as the phases
``startup`` and ``shutdown``. The dashboard starts too (as in a real run), on a free loopback
port so that runs never collide on 8787.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline import run
from pipeline.benchmark.engines import timed_session
from pipeline.benchmark.engines.dask_threads import summary_graph
from pipeline.cluster import connect

DASHBOARD = "127.0.0.1:0"


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row, read by ``dask.dataframe`` on the run's cluster."""
    cfg = run.make_config(run.parse_args([path, "--dashboard-address", DASHBOARD]))
    with timed_session(connect(cfg), phases) as client:
        threads = sum(client.nthreads().values())
        return client.compute(summary_graph(path, threads)).result()


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``python -m pipeline.run PATH --output OUT_DIR -q``; its outputs read back."""
    code = run.main([path, "--output", out_dir, "-q", "--dashboard-address", DASHBOARD])
    if code != 0:
        raise RuntimeError(f"python -m pipeline.run exited with code {code}")
    seconds = json.loads(Path(out_dir, "manifest.json").read_text())["seconds"]
    phases["startup"], phases["shutdown"] = seconds["cluster_start"], seconds["cluster_stop"]
    return tuple(pd.read_csv(Path(out_dir, f"{n}.csv")) for n in ("genre_summary", "top_tracks"))
