"""Pure frame -> frame functions: validate, deduplicate, top tracks, rows by genre (the
summary's statistics are declared in :mod:`pipeline.summary`).

Nothing here reads files, starts clusters or computes Dask collections. The top tracks are
written once, with the API pandas and Dask DataFrames share: called on a pandas frame they
return a pandas frame, called on a Dask frame a lazy Dask frame (a tree reduction; no shuffle,
no ``groupby(...).apply``).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema
from pipeline.schema import GENRE, KEY, TRACK_ID

# Arrow tables that crossed processes (Dask workers) or came back from Dask's spill to disk
# may arrive with buffers at any address; Acero's group-by would write a warning to stderr
# for each batch (which blocks a worker whose stderr nobody reads): let it copy them instead.
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")

TOP_FIELDS = [GENRE, TRACK_ID, "track_name", "artists", "popularity"]


def arrow_table(df: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """A pandas frame as an Arrow table, without its index, in the calling thread: pyarrow
    would start a thread pool per call for a large frame (one such call inside a Dask task
    deadlocked a 10M-row run once), and Dask's threads are the parallelism already."""
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False, nthreads=1)


# -- validation ---------------------------------------------------------------------------------


def invalid_reasons(df: pd.DataFrame, raw: pd.DataFrame | None = None) -> pd.Series:
    """Why each row breaks a value rule of the schema (missing value, out of range), or NA.

    ``df`` holds typed schema columns (NA where a value was empty or did not parse), all of
    them or some; ``raw``, when given, holds the text as written and is quoted in the reason.
    """
    reasons = pd.Series(pd.NA, index=df.index, dtype="object")
    for col in (c for c in schema.COLUMNS if c.name in df):
        values = df[col.name]
        open_ = reasons.isna()
        if col.required:
            missing = values.isna() & open_
            reasons[missing] = f"missing {col.name}"
            open_ &= ~missing
        if col.low is not None:
            bad = open_ & values.notna() & ~values.between(col.low, col.high)
            if bad.any():
                shown = (raw if raw is not None else df)[col.name][bad].astype(str)
                reasons[bad] = f"{col.name} out of range {col.low:g}..{col.high:g}: '" + shown + "'"
        if col.kind == "str":
            nul = open_ & values.str.contains("\x00", regex=False, na=False)
            reasons[nul] = f"{col.name} contains a NUL byte (is this a text file?)"
    return reasons


def split_valid(df: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """The rows without a reason, with the schema's dtypes restored."""
    kept = df.loc[reasons.isna()]
    return kept.astype({c: schema.PANDAS_DTYPES[c] for c in kept.columns})


def all_valid(table: pa.Table, nul_possible: bool = True) -> bool:
    """Does every row of an Arrow table of schema columns (all or some) keep every value rule?

    A fast gate only: when it says no, :func:`invalid_reasons` finds which rows and why.
    ``nul_possible=False`` (the text holds no NUL byte at all) skips looking for NUL bytes.
    """
    for col in (c for c in schema.COLUMNS if c.name in table.column_names):
        values = table[col.name]
        if col.required and values.null_count:
            return False
        if col.kind == "str" and nul_possible:
            if pc.any(pc.match_substring(values, "\x00")).as_py():
                return False
        elif col.low is not None and not _within(values, col.low, col.high):
            return False
    return True


def _within(values: pa.ChunkedArray, low: float, high: float) -> bool:
    """Are all values in low..high (NaN is not; missing values are not looked at)? numpy's
    min and max per chunk: NaN makes them NaN, and they are 10x faster than Arrow's on floats."""
    for chunk in values.chunks:
        if chunk.null_count:
            chunk = chunk.drop_null()
        if len(chunk):
            numbers = chunk.to_numpy(zero_copy_only=False)
            if not (low <= numbers.min() and numbers.max() <= high):
                return False
    return True


# -- duplicates ---------------------------------------------------------------------------------


def drop_duplicate_tracks(df: Any) -> Any:
    """Drop rows repeating a (track_id, track_genre) pair; the first in file order stays.

    Works on pandas and on Dask frames. On Dask a tree reduction into one partition (Dask
    keeps partition order, so "first" is exact): fine in a notebook, but that partition holds
    every row. ``python -m pipeline.run`` gathers each genre's rows instead
    (:func:`pipeline.shuffle.by_genre`), which keeps memory flat.
    """
    if isinstance(df, pd.DataFrame):
        return df.drop_duplicates(subset=list(KEY), keep="first")
    return df.drop_duplicates(subset=list(KEY), keep="first", split_out=1)


def first_occurrences(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per value: is it the first of its kind? (Arrow's dictionary encoding, which releases
    the GIL, then an integer pass.)"""
    codes = pc.dictionary_encode(values)
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    return ~pd.Index(codes.indices.to_numpy(zero_copy_only=False)).duplicated(keep="first")


# -- top tracks ---------------------------------------------------------------------------------


def top_partial(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most popular rows of each genre (ties by track_id), sorted by genre.

    A popularity histogram per genre (popularity is an integer 0..100) gives each genre's
    n-th highest popularity; only the rows at or above it are sorted on their text keys, a
    few per genre (measured: docs/design.md).
    """
    codes, genres = pd.factorize(df[GENRE])
    pop = df["popularity"].to_numpy("int64")
    hist = np.bincount(codes * 101 + np.clip(pop, 0, 100), minlength=len(genres) * 101)
    at_least = hist.reshape(-1, 101)[:, ::-1].cumsum(axis=1)  # rows at or above 100, 99, ...
    floor = 100 - np.argmax(at_least >= n, axis=1)
    floor[(at_least[:, -1] < n) | (floor == 0)] = np.iinfo(np.int64).min  # keep them all
    candidates = df.loc[pop >= floor[codes], TOP_FIELDS]
    ordered = candidates.sort_values(
        [GENRE, "popularity", TRACK_ID], ascending=[True, False, True], kind="stable"
    )
    return ordered.groupby(GENRE, sort=False, observed=True).head(n)


def merge_tops(parts: pd.DataFrame, n: int) -> pd.DataFrame:
    """Merge per-partition top rows (concatenated) into the top rows of all of them."""
    return top_partial(parts.reset_index(drop=True), n)


def finalize_top(part: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """Number the rows of each genre from 1: ``top_tracks.csv`` (docs/outputs.md), merging
    first when ``n`` is given."""
    out = (part if n is None else merge_tops(part, n)).reset_index(drop=True)
    out = out.astype({c: "str" for c in out.columns if c != "popularity"})
    out.insert(1, "rank", out.groupby(GENRE, sort=False).cumcount().astype("int64") + 1)
    return out[list(schema.TOP_COLUMNS)].astype({"popularity": "int64"})


def top_tracks(df: Any, n: int = 10) -> Any:
    """The top ``n`` tracks of each genre: a pandas frame, or for a Dask frame a lazy one
    (a reduction: each partition's top ``n`` per genre, merged in a tree; no shuffle)."""
    if isinstance(df, pd.DataFrame):
        return finalize_top(top_partial(df, n))
    return df.reduction(
        top_partial,
        combine=merge_tops,
        aggregate=finalize_top,
        chunk_kwargs={"n": n},
        combine_kwargs={"n": n},
        aggregate_kwargs={"n": n},
        meta=finalize_top(top_partial(df._meta, n)),
    )


# -- text to typed values (the exact parser's rows) ---------------------------------------------

_NUMBER_PATTERN = {"int": r"[+-]?\d+", "float": r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"}


def typed_values(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Convert text fields to the schema's types (NA where empty or not parseable), and give
    each row whose value does not parse a reason naming the column and the value.

    ``raw`` is the exact parser's frame: text columns and a ``reason`` column.
    """
    typed = pd.DataFrame(index=raw.index)
    reasons = raw["reason"].copy()
    for col in schema.COLUMNS:
        text = raw[col.name].where(raw[col.name] != "", None)
        if col.kind == "str":
            typed[col.name] = text.astype("str").where(text.notna(), None)
            continue
        if col.kind == "bool":
            truth = dict.fromkeys(schema.TRUE_VALUES, True) | dict.fromkeys(
                schema.FALSE_VALUES, False
            )
            values = text.map(truth)
        else:
            values = _numbers(text, col.kind)
        typed[col.name] = values
        bad = text.notna() & values.isna() & reasons.isna()
        reasons[bad] = f"{col.name} is not a valid {col.kind}: '" + text[bad].astype(str) + "'"
    return typed, reasons


def _numbers(text: pd.Series, kind: str) -> pd.Series:
    """Parse numbers with Arrow's parser (as the fast path does); per value when some fail."""
    try:
        arr = pc.cast(pa.array(text, type=pa.string()), schema.ARROW_TYPES_BY_KIND[kind])
    except pa.ArrowInvalid:
        pattern = re.compile(_NUMBER_PATTERN[kind])
        ok = [float(v) if isinstance(v, str) and pattern.fullmatch(v) else None for v in text]
        arr = pa.array(ok, type=pa.float64())
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


# -- rows by genre ------------------------------------------------------------------------------


Run = tuple[str, int, int]  # genre, start, rows


def genre_parts(
    table: pa.Table, part_rows: int | None = None
) -> Iterator[tuple[pa.Table, list[Run]]]:
    """An Arrow table of clean rows in parts of whole genres, each genre's rows together in one
    part, with the genres' runs in the part as (genre, start, rows), sorted by genre. Rows keep
    their order within a genre. A part is a copy of about ``part_rows`` rows (all rows in one
    copy by default), or a slice of ``table`` when its genres are together already, as in
    gathered rows."""
    if not table.num_rows:
        return
    genres = pc.dictionary_encode(table[GENRE]).combine_chunks()
    codes = genres.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = genres.dictionary.to_pylist()
    order = None
    if np.count_nonzero(np.diff(codes)) + 1 != len(names):
        order = np.argsort(codes, kind="stable")  # genre by genre
        codes = codes[order]
    bounds = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
    runs = list(itertools.pairwise(bounds))
    limit, i = part_rows or len(codes), 0
    while i < len(runs):
        first, j = runs[i][0], i + 1
        while j < len(runs) and runs[j][1] - first <= limit:
            j += 1
        end = runs[j - 1][1]
        if order is not None:
            part = table.take(order[first:end])
        else:
            part = table if end - first == table.num_rows else table.slice(first, end - first)
        yield part, sorted((names[codes[a]], a - first, b - a) for a, b in runs[i:j])
        i = j


def genre_groups(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """The rows of each genre of an Arrow table of clean rows, genre by genre in sorted order
    (one part: see :func:`genre_parts`)."""
    for part, runs in genre_parts(table):
        for genre, start, rows in runs:
            yield genre, part.slice(start, rows)
