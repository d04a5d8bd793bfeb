"""The outputs of a run, in one list: for each, its name in the output directory, how it is
computed (a Dask frame of the run's graph), how it is written into the staging directory, how
it is verified there and what it counts in the manifest. The graph (:mod:`pipeline.job`),
the run (:mod:`pipeline.execute`), the report, the docs and the tests read this list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from pipeline import publish, schema, summary, transforms

if TYPE_CHECKING:
    import dask.dataframe as dd

    from pipeline.job import Graph
    from pipeline.publish import Transaction


@dataclass(frozen=True)
class Output:
    """One output of a run (see the module's docstring)."""

    name: str
    about: str  # what it holds, for the docs
    compute: Callable[[Graph], dd.DataFrame]
    write: Callable[[pd.DataFrame, str, Transaction], None]  # frame, the tasks' directory
    verify: Callable[[pd.DataFrame, Transaction], str | None]  # why it is wrong, or None
    counts: Callable[[pd.DataFrame], Mapping[str, int]] = lambda frame: {}
    directory: bool = False

    @property
    def shown(self) -> str:
        """Its name as the report shows it (``tracks/``)."""
        return f"{self.name}/" if self.directory else self.name


def _csv(name: str) -> Callable[[pd.DataFrame, str, Transaction], None]:
    return lambda frame, work, tx: publish.write_csv(frame, tx.path(name), tx.storage_options)


def _csv_written(name: str) -> Callable[[pd.DataFrame, Transaction], str | None]:
    """A staged CSV output must be there, beginning with its header."""

    def verify(frame: pd.DataFrame, tx: Transaction) -> str | None:
        header = ",".join(frame.columns)
        found = publish.read_head(tx.path(name), len(header), tx.storage_options)
        return None if found == header else f"{name}: written {found!r}, not its header"

    return verify


def _keep_tracks(written: pd.DataFrame, work: str, tx: Transaction) -> None:
    publish.keep_tracks(work, tx.stage, tx.storage_options)


def _tracks_written(written: pd.DataFrame, tx: Transaction) -> str | None:
    """The staged Parquet files hold every row the tasks wrote (their footers counted)."""
    rows = publish.count_parquet_rows(tx.path(TRACKS_DIR), tx.storage_options)
    kept = _kept(written)
    return None if rows == kept else f"tracks: {rows} rows in the Parquet files, {kept} written"


def _kept(written: pd.DataFrame) -> int:
    return int(written["rows"].sum())


SUMMARY_CSV, TOP_CSV, TRACKS_DIR, REJECTED_CSV = (
    "genre_summary.csv",
    "top_tracks.csv",
    "tracks",
    "rejected_rows.csv",
)
#: The run's outputs, in the order the report names them.
OUTPUTS: tuple[Output, ...] = (
    Output(
        SUMMARY_CSV,
        "one row per genre, sorted by `track_genre`, then one column per statistic of "
        "`pipeline.summary.SUMMARY` (counts, shares, means, minimum, maximum, exact medians)",
        lambda g: summary.genre_summary(g.unique, whole_groups=True),
        _csv(SUMMARY_CSV),
        _csv_written(SUMMARY_CSV),
        lambda frame: {"genres": len(frame)},
    ),
    Output(
        TOP_CSV,
        f"the `--top` most popular tracks per genre: `{', '.join(schema.TOP_COLUMNS)}`; by "
        "genre, popularity descending, ties by `track_id`; rank from 1",
        lambda g: transforms.top_tracks(g.unique, g.top),
        _csv(TOP_CSV),
        _csv_written(TOP_CSV),
    ),
    Output(
        TRACKS_DIR,
        "every kept row as Parquet (zstd), hive-partitioned by genre, one file per genre: "
        "`tracks/track_genre=jazz/part-00003.parquet`",
        lambda g: g.unique.map_partitions(
            publish.write_tracks,
            f"{g.work}/tracks",
            g.storage_options,
            partition_info=True,
            meta=publish.WRITTEN_META,
        ),
        _keep_tracks,
        _tracks_written,
        lambda written: {"rows_kept": _kept(written)},
        directory=True,
    ),
    Output(
        REJECTED_CSV,
        f"every input row that was not kept: `file, line, reason, index`, the {len(schema.NAMES)} "
        "fields as written, `extra` (fields beyond the header's count)",
        lambda g: g.tracks.rejected,
        _csv(REJECTED_CSV),
        _csv_written(REJECTED_CSV),
        lambda frame: {"rows_rejected": len(frame)},
    ),
)
# Written last, by the run: the manifest once every output is verified, then _SUCCESS.
MANIFEST, SUCCESS = "manifest.json", "_SUCCESS"
SEALS = {
    MANIFEST: "input files and bytes, partitions, cluster, per worker its memory limit, peak "
    "memory and MB spilled, workers lost, rows read / kept / rejected / duplicates dropped, "
    "genres, engine, versions, config, per-stage seconds, start and end time",
    SUCCESS: "written last: without it the directory is not a complete output",
}
CONTRACT: tuple[str, ...] = (*(o.name for o in OUTPUTS), *SEALS)


def markdown_table() -> str:
    """Every file of a complete output as a Markdown table (the README and the docs)."""
    rows = ["| path | content |", "| --- | --- |"]
    rows += [f"| `{o.shown}` | {o.about} |" for o in OUTPUTS]
    rows += [f"| `{name}` | {about} |" for name, about in SEALS.items()]
    return "\n".join(rows)
