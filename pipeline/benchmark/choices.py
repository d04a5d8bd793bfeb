"""Three design choices, measured: how each genre's rows meet, how the genre summary is
aggregated, and how a summary by a key with many groups (artists) is.

``python -m pipeline.benchmark.choices FILE [--repeats N]`` runs every case in a fresh process
on the run's default cluster (one worker, a thread per core), cases taking turns, and prints
the seconds of the compute and the peak memory of the process (medians):

- ``gather``: every genre's clean rows whole in one partition, later copies of a track
  dropped (first in file order), the rows counted. ``scratch`` is the run's
  :func:`pipeline.shuffle.by_genre`; ``p2p`` and ``tasks`` are
  ``DataFrame.shuffle(on="track_genre")`` with Dask's two methods, then a sort by file position
  and ``drop_duplicates`` per partition.
- ``summary``: the genre summary's statistics that merge, of the clean rows of their columns.
  ``reduction`` is :func:`pipeline.summary.genre_summary` (Arrow's group-by inside
  ``DataFrame.reduction``); ``groupby`` is Dask's own ``groupby("track_genre").agg(...)`` and
  ``["artists"].nunique()`` (``split_out=1``), which gives the same answer.
- ``artists``: every statistic of the summary (exact medians included; not the distinct count
  of the key itself) by ``artists``, in as
  many partitions as blocks. ``shuffle`` is :func:`pipeline.summary.summarise` (the needed
  columns shuffled on the key, then each partition's groups summarised whole with Arrow's
  group-by); ``groupby`` is Dask's own ``groupby("artists").agg(..., split_out=N)`` (with a
  median in it Dask shuffles the rows too, then aggregates each partition with pandas).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from pipeline.schema import GENRE, KEY
from pipeline.summary import MERGEABLE, SUMMARY, Stat, inputs

CASES = (
    "gather:scratch",
    "gather:p2p",
    "gather:tasks",
    "summary:reduction",
    "summary:groupby",
    "artists:shuffle",
    "artists:groupby",
)
BY = "artists"  # the key with many groups of the artists cases, and their statistics (not
BY_STATS = tuple(s for s in SUMMARY if s.column != BY)  # those of the key itself)
# Each kind of statistic (pipeline.summary.KINDS) as Dask's groupby aggregation.
AGGREGATIONS = {
    "count": "size",
    "distinct": "nunique",
    "share": "mean",
    "mean": "mean",
    "min": "min",
    "max": "max",
    "median": "median",
}


def _with_position(df: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    number = partition_info["number"] if partition_info else 0
    return df.assign(_pos=np.arange(len(df), dtype="int64") + (number << 32))


def _first_in_file_order(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values("_pos", kind="stable")
    return df.drop_duplicates(list(KEY), keep="first").drop(columns="_pos")


def _gathered(clean, blocks: int, method: str, scratch: str):
    """The clean rows, each genre whole in one partition, later copies dropped."""
    from pipeline import shuffle

    if method == "scratch":
        return shuffle.by_genre(clean, scratch, blocks)[0]
    meta = clean._meta.assign(_pos=pd.Series(dtype="int64"))
    positions = clean.map_partitions(_with_position, partition_info=True, meta=meta)
    moved = positions.shuffle(on=GENRE, npartitions=blocks, shuffle_method=method)
    return moved.map_partitions(_first_in_file_order, meta=clean._meta)


def summary_by_groupby(
    clean, by: str = GENRE, stats: tuple[Stat, ...] = MERGEABLE, split_out: int = 1
):
    """Dask's own groupby-aggregation of ``stats`` by ``by``: one ``agg`` when a median makes
    it shuffle the rows anyway (pandas' ``nunique`` then counts the distinct values), else an
    ``agg`` in a tree and each distinct count apart (``nunique``: not an aggregation there)."""
    grouped = clean.groupby(by)
    some = next(s.column for s in stats if s.column not in (None, by))  # to count rows in
    holistic = not all(s.merges for s in stats)
    spec = {
        s.name: (s.column or some, AGGREGATIONS[s.kind])
        for s in stats
        if holistic or s.kind != "distinct"
    }
    out = grouped.agg(**spec, split_out=split_out)
    for s in (s for s in stats if not holistic and s.kind == "distinct"):
        out = out.join(grouped[s.column].nunique(split_out=split_out).rename(s.name))
    return out[[s.name for s in stats]]


def measure(path: str, case: str) -> tuple[float, float, int]:
    """(seconds, peak MB, rows out) of one case, in this process."""
    from distributed import Client, LocalCluster

    from pipeline.blocks import plan_input
    from pipeline.config import Config
    from pipeline.memory import peak_rss_mb
    from pipeline.read import read_tracks
    from pipeline.summary import genre_summary, summarise

    cfg = Config()  # the run's defaults: one worker, a thread per core
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=cfg.threads_per_worker,
        processes=False,
        dashboard_address="127.0.0.1:0",
    )
    with cluster, Client(cluster), tempfile.TemporaryDirectory() as scratch:
        plan = plan_input([path], cfg, cfg.threads_per_worker)
        what, method = case.split(":")
        if what == "gather":
            clean = read_tracks(plan).clean
            result = _gathered(clean, len(plan.blocks), method, scratch).map_partitions(len)
        elif what == "summary":
            clean = read_tracks(plan, inputs(MERGEABLE)).clean
            result = (
                genre_summary(clean, MERGEABLE)
                if method == "reduction"
                else summary_by_groupby(clean)
            )
        else:
            clean, parts = read_tracks(plan, inputs(BY_STATS, BY)).clean, len(plan.blocks)
            result = (
                summarise(clean, BY, BY_STATS, split_out=parts)
                if method == "shuffle"
                else summary_by_groupby(clean, BY, BY_STATS, split_out=parts)
            ).map_partitions(len)
        start = time.perf_counter()
        out = result.compute()
        seconds = time.perf_counter() - start
    return seconds, peak_rss_mb() or 0.0, len(out) if what == "summary" else int(out.sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.benchmark.choices")
    p.add_argument("input")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one measurement
    args = p.parse_args(argv)
    if args.case:
        print(*measure(args.input, args.case))
        return 0
    runs: dict[str, list[tuple[float, float, int]]] = {c: [] for c in CASES}
    for _ in range(args.repeats):  # cases take turns
        for case in CASES:
            cmd = [sys.executable, "-m", "pipeline.benchmark.choices", args.input, "--case", case]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            seconds, peak, rows = done.stdout.split()
            runs[case].append((float(seconds), float(peak), int(rows)))
    print("| case | seconds (median) | min-max | peak MB (median) | rows out |")
    print("| --- | --- | --- | --- | --- |")
    for case, got in runs.items():
        s = [r[0] for r in got]
        peak = statistics.median(r[1] for r in got)
        print(
            f"| {case} | {statistics.median(s):.2f} | {min(s):.2f}-{max(s):.2f} | "
            f"{peak:,.0f} | {got[0][2]:,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
