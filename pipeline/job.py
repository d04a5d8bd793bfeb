"""The graph of one run, as Dask DataFrame operations, computed in one ``dask.compute``.

    read_tracks(plan)                    blocks -> clean rows and rejected rows (dd.from_map)
    shuffle.by_genre(tracks.clean)       each genre whole in one partition, later copies dropped
    then every output of pipeline.outputs, from those frames:
    genre_summary(unique)                each partition's genres summarised whole: Arrow's
                                         group-by and exact medians, no merge
    top_tracks(unique)                   a reduction: top rows per partition, merged in a tree
    unique.map_partitions(write_tracks)  one Parquet file per genre
    tracks.rejected                      the rejected rows, numbered by their file's lines

Every task is pure, or writes files named by what they hold (a task run again by Dask writes
the same bytes under the same names), so a lost worker changes nothing but the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dask.dataframe as dd
import pandas as pd

from pipeline import shuffle
from pipeline.blocks import Plan
from pipeline.outputs import OUTPUTS, REJECTED_CSV
from pipeline.read import Tracks, read_tracks
from pipeline.storage import StorageOptions


@dataclass(frozen=True)
class Graph:
    """The frames every output of a run is computed from (lazy; they share their tasks)."""

    tracks: Tracks
    unique: dd.DataFrame  # clean rows without later copies, each genre whole in one partition
    pieces: dd.DataFrame  # rows per genre and block in the scratch files (copies included)
    top: int
    work: str  # where the run's tasks write (a path or URL)
    storage_options: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Job:
    """A run's outputs, lazy: one Dask frame per output of :data:`pipeline.outputs.OUTPUTS`."""

    graph: Graph
    outputs: Mapping[str, dd.DataFrame]

    def collections(self) -> list[dd.DataFrame]:
        return [*self.outputs.values(), self.graph.pieces]


@dataclass(frozen=True)
class JobResult:
    """Everything a run computed, ready to be written: each output's frame by name, and the
    accounting (every row read is kept, rejected or a dropped duplicate)."""

    frames: Mapping[str, pd.DataFrame]
    counts: Mapping[str, int]  # the outputs' counts for the manifest (rows_kept, genres, ...)
    rows: int  # read
    duplicates: int

    @property
    def kept(self) -> int:
        return self.counts["rows_kept"]

    @property
    def rejected(self) -> pd.DataFrame:
        return self.frames[REJECTED_CSV]


def build(plan: Plan, top: int, work: str, storage_options: StorageOptions | None = None) -> Job:
    """The lazy outputs of a run of ``plan``; its files go under ``work`` (a path or URL)."""
    options = dict(storage_options or {})
    tracks = read_tracks(plan)
    unique, pieces = shuffle.by_genre(tracks.clean, f"{work}/scratch", len(plan.blocks), options)
    graph = Graph(tracks, unique, pieces, top, work, options)
    return Job(graph, {o.name: o.compute(graph) for o in OUTPUTS})


def collect(job: Job, computed: list[pd.DataFrame]) -> JobResult:
    """The computed :meth:`Job.collections` of ``job`` as a :class:`JobResult`."""
    *frames, pieces = computed
    named = dict(zip(job.outputs, frames, strict=True))
    named[REJECTED_CSV] = named[REJECTED_CSV].reset_index(drop=True)
    counts = {k: v for o in OUTPUTS for k, v in o.counts(named[o.name]).items()}
    clean = int(pieces["rows"].sum())
    rejected = len(named[REJECTED_CSV])
    return JobResult(named, counts, rows=clean + rejected, duplicates=clean - counts["rows_kept"])
