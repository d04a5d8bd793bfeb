"""The graph of one run, as Dask DataFrame operations, computed in one ``dask.compute``.

    read_tracks(plan)                    blocks -> clean rows and rejected rows (dd.from_map)
    shuffle.by_genre(tracks.clean)       each genre whole in one partition, later copies dropped
    genre_summary(unique)                a reduction: Arrow's group-by on track_genre per
                                         partition, partials merged in a tree (split_out=1)
    top_tracks(unique)                   a reduction: top rows per partition, merged in a tree
    unique.map_partitions(write_tracks)  one Parquet file per genre

Every task is pure, or writes files named by what they hold (a task run again by Dask writes
the same bytes under the same names), so a lost worker changes nothing but the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.dataframe as dd
import pandas as pd

from pipeline import shuffle
from pipeline.blocks import Plan
from pipeline.publish import WRITTEN_META, write_tracks
from pipeline.read import read_tracks
from pipeline.storage import StorageOptions
from pipeline.transforms import genre_summary, top_tracks


@dataclass(frozen=True)
class Job:
    """A run's outputs, lazy: Dask DataFrames that share their block tasks."""

    summary: dd.DataFrame
    top: dd.DataFrame
    rejected: dd.DataFrame
    pieces: dd.DataFrame  # rows per genre and block in the scratch files
    written: dd.DataFrame  # rows per Parquet file written

    def collections(self) -> list[dd.DataFrame]:
        return [self.summary, self.top, self.rejected, self.pieces, self.written]


@dataclass(frozen=True)
class JobResult:
    """Everything a run computed, ready to be written."""

    summary: pd.DataFrame
    top: pd.DataFrame
    rejected: pd.DataFrame
    rows: int  # read: kept + rejected + duplicates
    kept: int  # written to the Parquet dataset
    duplicates: int


def build(plan: Plan, top: int, work: str, storage_options: StorageOptions | None = None) -> Job:
    """The lazy outputs of a run of ``plan``; its files go under ``work`` (a path or URL)."""
    options = dict(storage_options or {})
    tracks = read_tracks(plan)
    unique, pieces = shuffle.by_genre(tracks.clean, f"{work}/scratch", len(plan.blocks), options)
    written = unique.map_partitions(
        write_tracks, f"{work}/tracks", options, partition_info=True, meta=WRITTEN_META
    )
    return Job(genre_summary(unique), top_tracks(unique, top), tracks.rejected, pieces, written)


def collect(computed: list[pd.DataFrame]) -> JobResult:
    """The computed :meth:`Job.collections` as a :class:`JobResult`."""
    summary, top, rejected, pieces, written = computed
    clean = int(pieces["rows"].sum())
    kept = int(written["rows"].sum())
    return JobResult(
        summary=summary,
        top=top,
        rejected=rejected.reset_index(drop=True),
        rows=clean + len(rejected),
        kept=kept,
        duplicates=clean - kept,
    )
