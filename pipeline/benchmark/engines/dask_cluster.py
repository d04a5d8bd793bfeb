"""Dask exactly as ``python -m pipeline.run`` runs by default: a local distributed cluster.

The cluster's start and stop are fixed costs, reported apart from the work as the phases
``startup`` and ``shutdown``. The dashboard starts too (as in a real run: its pages on the
first visit), on a free loopback port so that runs never collide on 8787.
"""

from __future__ import annotations

from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

from pipeline.memory import imports_frozen

with imports_frozen():  # as `python -m pipeline.run` imports them
    import pandas as pd

    from pipeline import run as cli
    from pipeline.benchmark.engines import timed_session
    from pipeline.blocks import expand_input, plan_input
    from pipeline.cluster import connect
    from pipeline.config import Config
    from pipeline.execute import Seams
    from pipeline.outputs import SUMMARY_CSV, TOP_CSV
    from pipeline.read import read_tracks
    from pipeline.summary import MERGEABLE, genre_summary, inputs

DASHBOARD = "127.0.0.1:0"


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row, on the run's cluster, read as
    the run reads: byte blocks parsed by pyarrow (only the needed columns) into a Dask
    DataFrame, then ``summary.genre_summary``."""
    cfg = cli.make_config(cli.parse_args([path, "--dashboard-address", DASHBOARD]))
    with timed_session(connect(cfg), phases) as client:
        plan = plan_input(expand_input(path), cfg, sum(client.nthreads().values()))
        clean = read_tracks(plan, inputs(MERGEABLE)).clean
        return client.compute(genre_summary(clean, MERGEABLE)).result()


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``python -m pipeline.run PATH --output OUT_DIR -q``; its outputs read back."""
    return run_cli(path, out_dir, phases)


def run_cli(
    path: str, out_dir: str, phases: dict[str, float], *options: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``python -m pipeline.run PATH --output OUT_DIR -q OPTIONS``; its outputs read back.

    The run obtains its cluster through a seam that times the cluster's start and stop;
    nothing else about the run changes.
    """

    def timed_connect(cfg: Config):
        return timed_session(connect(cfg), phases)

    errors = StringIO()
    argv = [path, "--output", out_dir, "-q", "--dashboard-address", DASHBOARD, *options]
    with redirect_stderr(errors):
        code = cli.main(argv, Seams(connect=timed_connect))
    if code != 0:
        message = " / ".join(errors.getvalue().strip().splitlines())
        raise RuntimeError(f"pipeline.run exited with {code}: {message}")
    return tuple(pd.read_csv(Path(out_dir, name)) for name in (SUMMARY_CSV, TOP_CSV))
