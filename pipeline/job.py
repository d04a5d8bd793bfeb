"""The task graph of one run: blocks -> clean rows -> partials -> outputs, parsed once.

Per block (one task each, in parallel): read the bytes, parse, validate, drop duplicates within
the block, write the block's clean rows as Parquet (a file per genre), and keep only small
things: the additive summary partial and the top rows per genre, the rejected rows. Partials
merge in a tree as blocks finish.

Once every block is written, each genre's files are read back, only their track_id and
artists columns and one genre at a time (so memory stays flat however large the input), to
find the rows whose pair occurred in an earlier block and to count the genre's distinct
artists. Such duplicates are rare (in the real file a repeated pair sits beside its twin, in
the same block): they are removed from their Parquet file, the summary of a genre that had
some is recomputed from its files, and so are its top rows if they held such a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import pandas as pd
import pyarrow as pa

from pipeline import io, schema, transforms
from pipeline.io import Block, StorageOptions
from pipeline.schema import GENRE, TRACK_ID
from pipeline.transforms import SummaryPartial

GENRE_TASKS = 16  # tasks sharing the genres' duplicate search after the blocks
SUMMARY_TYPES = {c: schema.ARROW_TYPES[c] for c in schema.SUMMARY_INPUT}
_SUMMED = [c for c in schema.SUMMARY_INPUT if c not in (GENRE, "artists")]  # in a genre's files


@dataclass
class BlockResult:
    """What one block leaves behind after its rows are written."""

    block: Block
    newlines: int
    rows: int
    rejected: pd.DataFrame
    duplicates: int
    kept: int
    summary: SummaryPartial
    top: pd.DataFrame
    files: list[str]


@dataclass
class JobResult:
    """Everything a run computed, ready to be written."""

    summary: pd.DataFrame
    top: pd.DataFrame
    rejected: pd.DataFrame
    rows: int
    kept: int
    duplicates: int


def clean_block(block: Block) -> tuple[pa.Table, pd.DataFrame, int, int, int]:
    """Parse a block: (unique clean rows, rejected rows with in-block line, rows read,
    duplicates dropped within the block, newlines)."""
    raw = None
    with io.block_data(block) as data:
        newlines = io.count_lines(data)
        table = io.parse_fast(data, block)
        if table is None or not transforms.all_valid(table):
            raw = io.parse_exact(data, block)
    if raw is None:
        first = transforms.first_occurrences(table)
        unique = table if first.all() else table.filter(pa.array(first))
        return unique, _no_rejects(), table.num_rows, table.num_rows - unique.num_rows, newlines
    typed, reasons = transforms.typed_values(raw)
    reasons = reasons.fillna(transforms.invalid_reasons(typed, raw))
    rejected = raw.loc[reasons.notna()].assign(reason=reasons, file=block.path)
    clean = transforms.split_valid(typed, reasons)
    unique = transforms.drop_duplicate_tracks(clean)
    return (
        pa.Table.from_pandas(unique, schema=schema.ARROW_SCHEMA, preserve_index=False),
        rejected[list(io.REJECT_COLUMNS)],
        len(raw),
        len(clean) - len(unique),
        newlines,
    )


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="int64" if c == "line" else "object") for c in io.REJECT_COLUMNS}
    )


def process_block(
    block: Block, top: int, stage: str, storage_options: StorageOptions | None = None
) -> BlockResult:
    """All per-block work: one task per block."""
    table, rejected, rows, duplicates, newlines = clean_block(block)
    files = io.write_tracks(table, f"{stage}/tracks", f"part-{block.ordinal:05d}", storage_options)
    summary = transforms.summary_partial_arrow(table, with_pairs=False)
    return BlockResult(
        block=block,
        newlines=newlines,
        rows=rows,
        rejected=rejected,
        duplicates=duplicates,
        kept=table.num_rows,
        summary=summary,
        top=transforms.top_partial_arrow(table, summary.genres, top),
        files=files,
    )


def files_by_genre(files: list[list[str]]) -> dict[str, list[str]]:
    """The Parquet files of every block, grouped by genre, each genre's in block order."""
    of_genre: dict[str, list[str]] = {}
    for path in (p for block in files for p in block):
        of_genre.setdefault(io.genre_of_file(path), []).append(path)
    return of_genre


def genre_duplicates(
    task: int, of_genre: dict[str, list[str]], storage_options: StorageOptions | None = None
) -> tuple[pd.DataFrame, pd.Series, list[pd.DataFrame]]:
    """For every ``GENRE_TASKS``-th genre from ``task`` on: remove the rows whose track_id
    occurred in an earlier block of the genre from their Parquet file, and count the genre's
    distinct artists among the rows that stay. Returns the removed rows, the counts, and the
    summary partial (``genres`` part) of each genre that lost rows, recomputed from its files:
    subtracting the removed rows' sums instead would lose a small value added to a large one
    (found by the property test: 7e-71 + 1.0 - 1.0 is 0)."""
    removed = [pd.DataFrame(columns=schema.NAMES)]
    artists, recomputed = {}, []
    for genre in sorted(of_genre)[task::GENRE_TASKS]:  # one genre's ids and artists at a time
        paths = of_genre[genre]
        keys = [io.read_tracks_columns(p, [TRACK_ID, "artists"], storage_options) for p in paths]
        later, artists[genre] = transforms.later_copies(keys)
        emptied = set()
        for part, ids in later.groupby("part")[TRACK_ID]:  # one rewrite per affected file
            df = io.read_tracks_file(paths[part], storage_options)
            hit = df[TRACK_ID].isin(ids)
            removed.append(df[hit])
            io.rewrite_tracks_file(paths[part], df[~hit], storage_options)
            if hit.all():
                emptied.add(paths[part])  # rewrite_tracks_file removed it
        if not later.empty:
            kept = [p for p in paths if p not in emptied]
            recomputed.append(_genre_partial(genre, kept, storage_options))
    return pd.concat(removed, ignore_index=True), pd.Series(artists, dtype="int64"), recomputed


def _genre_partial(
    genre: str, paths: list[str], storage_options: StorageOptions | None
) -> pd.DataFrame:
    """The summary partial (``genres`` part) of one genre's Parquet files."""
    table = pa.concat_tables(io.read_tracks_columns(p, _SUMMED, storage_options) for p in paths)
    table = table.append_column(GENRE, pa.array([genre] * table.num_rows, pa.string()))
    return transforms.summary_partial_arrow(table, with_pairs=False).genres


def finish(
    summary: SummaryPartial,
    top: pd.DataFrame,
    dedup: list[tuple[pd.DataFrame, pd.Series, list[pd.DataFrame]]],
    n: int,
    of_genre: dict[str, list[str]],
    storage_options: StorageOptions | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The final summary and top tracks, corrected for removed cross-block duplicates; the
    distinct artists per genre come from :func:`genre_duplicates`."""
    removed_rows = pd.concat([removed for removed, _, _ in dedup], ignore_index=True)
    genres, recomputed = summary.genres, [g for _, _, genres in dedup for g in genres]
    if recomputed:
        fixed = pd.concat(recomputed)
        genres = pd.concat([genres.drop(fixed.index), fixed])
    if not removed_rows.empty:
        hit = set(top.loc[top[TRACK_ID].isin(removed_rows[TRACK_ID]), GENRE]) & set(
            removed_rows[GENRE]
        )
        if hit:
            paths = [p for genre in hit for p in of_genre[genre] if io.exists(p, storage_options)]
            rows = pd.concat([io.read_tracks_file(p, storage_options) for p in paths])
            rows = rows.astype(schema.PANDAS_DTYPES)
            top = transforms.merge_tops(
                [top[~top[GENRE].isin(hit)], transforms.top_partial(rows, n)], n
            )
    artists = pd.concat([artists for _, artists, _ in dedup])
    return (
        transforms.finalize_summary(SummaryPartial(genres, summary.pairs), artists),
        transforms.finalize_top(top),
        len(removed_rows),
    )


def build(
    blocks: list[Block], top: int, stage: str, storage_options: StorageOptions | None = None
) -> dict[str, Any]:
    """The lazy outputs of a run: one graph, every block parsed once; ``stage`` (a path or
    URL) and ``storage_options`` say where the tasks write."""
    results = [dask.delayed(process_block)(b, top, stage, storage_options) for b in blocks]
    merge_top = dask.delayed(lambda parts: transforms.merge_tops(parts, top))
    summary = transforms.tree_reduce(
        [r.summary for r in results], dask.delayed(transforms.merge_summaries)
    )
    tops = transforms.tree_reduce([r.top for r in results], merge_top)
    of_genre = dask.delayed(files_by_genre)([r.files for r in results])
    dedup = [
        dask.delayed(genre_duplicates)(task, of_genre, storage_options)
        for task in range(GENRE_TASKS)
    ]
    outputs = dask.delayed(finish, nout=3)(summary, tops, dedup, top, of_genre, storage_options)
    counts = [dask.delayed(_counts)(r) for r in results]
    return {"outputs": outputs, "counts": counts, "rejected": [r.rejected for r in results]}


def summary_block(block: Block) -> SummaryPartial:
    """The summary partial of a block's rows as they are (no validation, no deduplication),
    parsing only the columns the summary needs."""
    with io.block_data(block) as data:
        table = io.parse_columns(data, block, SUMMARY_TYPES)
    if table is None:
        raise io.InputError(
            f"{block.path}: some rows do not parse as the tracks schema; "
            "python -m pipeline.run reports and skips them"
        )
    return transforms.summary_partial_arrow(table)


def build_summary(blocks: list[Block]) -> Any:
    """The lazy genre summary of every row: one task per block, then a tree merge."""
    parts = [dask.delayed(summary_block)(b) for b in blocks]
    merged = transforms.tree_reduce(parts, dask.delayed(transforms.merge_summaries))
    return dask.delayed(transforms.finalize_summary)(merged)


def _counts(r: BlockResult) -> tuple[int, int, int, int]:
    return r.newlines, r.rows, r.duplicates, r.kept


def collect(blocks: list[Block], computed: dict[str, Any]) -> JobResult:
    """Turn the computed pieces into a :class:`JobResult`, line numbers made file-relative."""
    summary, top, removed = computed["outputs"]
    counts = computed["counts"]
    parts, line = [], 1  # the file line where the block starts
    for block, (newlines, *_), rejected in zip(blocks, counts, computed["rejected"], strict=True):
        line = 1 if block.index == 0 else line
        parts.append(rejected.assign(line=rejected["line"] + line - 1))
        line += newlines
    rejected = pd.concat([_no_rejects(), *parts], ignore_index=True)
    return JobResult(
        summary=summary,
        top=top,
        rejected=rejected,
        rows=sum(c[1] for c in counts),
        kept=sum(c[3] for c in counts) - removed,
        duplicates=sum(c[2] for c in counts) + removed,
    )
