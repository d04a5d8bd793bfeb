"""The task graph of one run: blocks -> clean rows -> partials -> outputs, parsed once.

Per block (one task each, in parallel): read the bytes, parse, validate, drop duplicates within
the block, write the block's clean rows as Parquet, and keep only small things: the additive
summary partial and the top rows per genre, the rejected rows; the kept (track_id, track_genre)
pairs are spilled to disk in 16 buckets by genre. Partials merge in a tree as blocks finish.

A duplicate whose first occurrence lies in an earlier block is found from the spilled pairs
once all blocks are read (one task per bucket). Such rows are rare (in the real file a repeated
pair sits beside its twin, in the same block): they are removed from the block's Parquet file
of their genre and subtracted from the summary partial (every field of it is additive); a genre
whose top rows held such a row has its top rows recomputed from its Parquet files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import pandas as pd
import pyarrow as pa

from pipeline import io, schema, transforms
from pipeline.io import Block
from pipeline.schema import GENRE, KEY, TRACK_ID
from pipeline.transforms import SummaryPartial

KEYS = "_keys"  # staging subdirectory of the spilled (track_id, genre) pairs; not published


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
    data = io.read_block(block)
    table = io.parse_fast(data, block)
    if table is not None and transforms.all_valid(table):
        unique = table.filter(pa.array(transforms.first_occurrences(table)))
        dups = table.num_rows - unique.num_rows
        return unique, _no_rejects(), table.num_rows, dups, data.count(b"\n")
    raw = io.parse_exact(data, block)
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
        data.count(b"\n"),
    )


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="int64" if c == "line" else "object") for c in io.REJECT_COLUMNS}
    )


def process_block(block: Block, top: int, stage: str) -> BlockResult:
    """All per-block work: one task per block."""
    table, rejected, rows, duplicates, newlines = clean_block(block)
    io.write_keys(table.select(list(KEY)), f"{stage}/{KEYS}", block.ordinal)
    files = io.write_tracks(table, f"{stage}/tracks", f"part-{block.ordinal:05d}")
    unique = table.to_pandas()
    return BlockResult(
        block=block,
        newlines=newlines,
        rows=rows,
        rejected=rejected,
        duplicates=duplicates,
        kept=len(unique),
        summary=transforms.summary_partial(unique),
        top=transforms.top_partial(unique, top),
        files=files,
    )


def bucket_duplicates(bucket: int, blocks: int, stage: str, _done: list[int]) -> pd.DataFrame:
    """Later copies among one bucket of keys (``_done``: wait for every block)."""
    return transforms.later_copies(io.read_keys(f"{stage}/{KEYS}", bucket, blocks))


def remove_block_duplicates(
    drops: list[pd.DataFrame], block: int, files: list[str]
) -> pd.DataFrame:
    """Remove this block's rows whose pair occurred in an earlier block from its Parquet files;
    return the removed rows. Most blocks have none and return at once."""
    mine = pd.concat([d[d["part"] == block] for d in drops])
    removed = [pd.DataFrame(columns=schema.NAMES)]
    by_genre = {io.genre_of_file(p): p for p in files}
    for genre, keys in mine.groupby(GENRE):  # one rewrite per affected file
        df = io.read_tracks_file(by_genre[genre])
        hit = df[TRACK_ID].isin(keys[TRACK_ID])
        removed.append(df[hit])
        io.rewrite_tracks_file(by_genre[genre], df[~hit])
    return pd.concat(removed, ignore_index=True)


def finish(
    summary: SummaryPartial,
    top: pd.DataFrame,
    removed: list[pd.DataFrame],
    n: int,
    files: list[list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The final summary and top tracks, corrected for removed cross-block duplicates."""
    removed_rows = pd.concat(removed, ignore_index=True)
    if not removed_rows.empty:
        removed_rows = removed_rows.astype(schema.PANDAS_DTYPES)
        summary = transforms.merge_summaries(
            [summary, transforms.summary_partial(removed_rows)], [1, -1]
        )
        hit = set(top.loc[top[TRACK_ID].isin(removed_rows[TRACK_ID]), GENRE]) & set(
            removed_rows[GENRE]
        )
        if hit:
            paths = [
                p
                for block in files
                for p in block
                if io.genre_of_file(p) in hit and Path(p).exists()
            ]
            rows = pd.concat([io.read_tracks_file(p) for p in paths]).astype(schema.PANDAS_DTYPES)
            top = transforms.merge_tops(
                [top[~top[GENRE].isin(hit)], transforms.top_partial(rows, n)], n
            )
    return transforms.finalize_summary(summary), transforms.finalize_top(top), len(removed_rows)


def build(blocks: list[Block], top: int, stage: str) -> dict[str, Any]:
    """The lazy outputs of a run: one graph, every block parsed once."""
    results = [dask.delayed(process_block)(b, top, stage) for b in blocks]
    merge_top = dask.delayed(lambda parts: transforms.merge_tops(parts, top))
    summary = transforms.tree_reduce(
        [r.summary for r in results], dask.delayed(transforms.merge_summaries)
    )
    tops = transforms.tree_reduce([r.top for r in results], merge_top)
    done = [r.kept for r in results]
    drops = [
        dask.delayed(bucket_duplicates)(b, len(blocks), stage, done) for b in range(io.KEY_BUCKETS)
    ]
    files = [r.files for r in results]
    removed = [dask.delayed(remove_block_duplicates)(drops, i, f) for i, f in enumerate(files)]
    outputs = dask.delayed(finish, nout=3)(summary, tops, removed, top, files)
    counts = [dask.delayed(_counts)(r) for r in results]
    return {"outputs": outputs, "counts": counts, "rejected": [r.rejected for r in results]}


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
