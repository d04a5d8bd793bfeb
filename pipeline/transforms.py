"""Pure frame -> frame functions: validate, deduplicate, genre summary, top tracks.

Nothing here reads files, starts clusters or computes Dask collections. The
per-genre outputs are written as *partial -> merge -> finalize* triples: the
partial of a partition is small (one row per genre, one per genre-artist pair,
N rows per genre for the top tracks) and partials merge associatively. The same
triple runs on one pandas frame, on the partitions of a Dask frame, or inside the
pipeline's graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema
from pipeline.schema import GENRE, KEY, MEAN_COLUMNS, TRACK_ID

# Arrow tables that crossed processes (Dask workers) may arrive with buffers at any address;
# Acero's group-by would print a warning for each: let it copy such buffers instead.
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")

POPULARITY_BINS = 101  # popularity is an integer 0..100: a histogram gives exact min and max
_HIST = [f"pop_{i}" for i in range(POPULARITY_BINS)]
_SUMS = [f"sum_{c}" for c in MEAN_COLUMNS]
TOP_FIELDS = [GENRE, TRACK_ID, "track_name", "artists", "popularity"]


# -- validation ---------------------------------------------------------------------------------


def invalid_reasons(df: pd.DataFrame, raw: pd.DataFrame | None = None) -> pd.Series:
    """Why each row breaks a value rule of the schema (missing value, out of range), or NA.

    ``df`` holds typed columns (NA where a value was empty or did not parse); ``raw``, when
    given, holds the text as written and is quoted in the reason.
    """
    reasons = pd.Series(pd.NA, index=df.index, dtype="object")
    for col in schema.COLUMNS:
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
    kept = df.loc[reasons.isna(), list(schema.NAMES)]
    return kept.astype(schema.PANDAS_DTYPES)


# -- duplicates ---------------------------------------------------------------------------------


def drop_duplicate_tracks(df: Any) -> Any:
    """Drop rows repeating a (track_id, track_genre) pair; the first in file order stays.

    Works on pandas and on Dask frames (one output partition: Dask keeps partition order).
    """
    if isinstance(df, pd.DataFrame):
        return df.drop_duplicates(subset=list(KEY), keep="first")
    return df.drop_duplicates(subset=list(KEY), keep="first", split_out=1)


def first_occurrences(table: pa.Table) -> np.ndarray:
    """Per row of an Arrow table: is it the first row with its (track_id, track_genre) pair?

    The same answer as :func:`drop_duplicate_tracks`, computed by Arrow kernels that release
    the GIL (the pipeline's hot path runs several blocks at once in threads).
    """
    key = pc.binary_join_element_wise(
        *(pc.cast(table[c], pa.large_string()) for c in KEY), pa.scalar("\x1f", pa.large_string())
    )
    codes = pc.dictionary_encode(key).combine_chunks().indices.to_numpy()
    return ~pd.Index(codes).duplicated(keep="first")


def later_copies(keys: Sequence[pa.Table]) -> tuple[pd.DataFrame, int]:
    """Across tables of one genre's (track_id, artists), in file order, whose ids are unique
    within each table: the rows whose track_id already occurred in an earlier table (columns
    ``part``, the position of their table, and track_id), and the number of distinct artists
    of the rows that stay (the first copies)."""
    parts = [
        k.select([TRACK_ID, "artists"])
        .cast(_KEYS)
        .append_column("part", pa.array(np.full(len(k), i)))
        for i, k in enumerate(keys)
    ]
    table = pa.concat_tables(parts)
    codes = pc.dictionary_encode(table[TRACK_ID]).combine_chunks().indices.to_numpy()
    first = ~pd.Index(codes).duplicated(keep="first")
    later = table.filter(pa.array(~first)).to_pandas()[["part", TRACK_ID]]
    artists = pc.count_distinct(table.filter(pa.array(first))["artists"], mode="only_valid")
    return later, artists.as_py()


_KEYS = pa.schema([(TRACK_ID, pa.string()), ("artists", pa.string())])


def all_valid(table: pa.Table) -> bool:
    """Does every row of an Arrow table of schema columns keep every value rule?

    A fast gate only: when it says no, :func:`invalid_reasons` finds which rows and why.
    """
    for col in schema.COLUMNS:
        values = table[col.name]
        if col.required and values.null_count:
            return False
        if col.kind == "str" and pc.any(pc.match_substring(values, "\x00")).as_py():
            return False
        if col.low is None:
            continue
        if col.kind == "float" and pc.any(pc.is_nan(values)).as_py():
            return False
        lo, hi = pc.min_max(values).values()
        if lo.as_py() is not None and (lo.as_py() < col.low or hi.as_py() > col.high):
            return False
    return True


# -- genre summary ------------------------------------------------------------------------------


class SummaryPartial(NamedTuple):
    """Additive per-genre aggregates of some rows.

    ``genres``: per genre the row count, explicit count, popularity histogram and the sums
    behind each mean. ``pairs``: the distinct (genre, artists) pairs (an Arrow table of
    :data:`PAIRS_SCHEMA`: it has a row per pair, so it stays in Arrow, off the GIL).
    """

    genres: pd.DataFrame
    pairs: pa.Table


PAIRS_SCHEMA = pa.schema([(GENRE, pa.string()), ("artists", pa.string())])
_GENRE_COLUMNS = [*_SUMS, "rows", "explicit", *_HIST]


def summary_partial(df: pd.DataFrame) -> SummaryPartial:
    """The additive aggregates of one partition of clean rows (pandas)."""
    if df.empty:
        return _empty_partial()
    by_genre = df.groupby(GENRE, sort=False, observed=True)
    sums = by_genre[list(MEAN_COLUMNS)].sum().set_axis(_SUMS, axis=1)
    counts = pd.DataFrame({"rows": by_genre.size(), "explicit": by_genre["explicit"].sum()})
    hist = pd.crosstab(df[GENRE], df["popularity"]).reindex(
        index=sums.index, columns=range(POPULARITY_BINS), fill_value=0
    )
    genres = pd.concat([sums, counts, hist.set_axis(_HIST, axis=1)], axis=1)
    return SummaryPartial(genres, _pairs_table(df[[GENRE, "artists"]].drop_duplicates()))


def summary_partial_arrow(table: pa.Table, with_pairs: bool = True) -> SummaryPartial:
    """:func:`summary_partial` of an Arrow table, computed by Arrow's hash aggregation (which
    releases the GIL, so partitions in threads really run at once). Without pairs, the
    distinct artists must be counted another way (the run counts them per genre)."""
    if not table.num_rows:
        return _empty_partial()
    # one hash aggregation by (genre, popularity): the histogram, and sums added up per genre
    # (measured: 13 ms per 48 MiB block, 22 ms as two, by genre and by genre and popularity)
    fields = [*MEAN_COLUMNS, "explicit"]
    groups = (
        table.group_by([GENRE, "popularity"], use_threads=False)
        .aggregate([(c, "sum") for c in fields] + [([], "count_all")])
        .to_pandas()
    )
    sums = groups.groupby(GENRE, sort=False)[[f"{c}_sum" for c in fields] + ["count_all"]].sum()
    sums = sums.set_axis([*_SUMS, "explicit", "rows"], axis=1)
    hist = (
        groups.pivot(index=GENRE, columns="popularity", values="count_all")
        .reindex(index=sums.index, columns=range(POPULARITY_BINS))
        .fillna(0)
        .astype("int64")
        .set_axis(_HIST, axis=1)
    )
    genres = pd.concat([sums.astype({"explicit": "int64"}), hist], axis=1)[_GENRE_COLUMNS]
    pairs = _distinct_pairs(table) if with_pairs else PAIRS_SCHEMA.empty_table()
    return SummaryPartial(genres, _pairs_table(pairs))


def _distinct_pairs(table: pa.Table) -> pa.Table:
    return table.group_by([GENRE, "artists"], use_threads=False).aggregate([])


def unique_artists(pairs: pa.Table) -> pd.Series:
    """Distinct artists per genre, from a table of pairs."""
    counts = pairs.group_by(GENRE, use_threads=False).aggregate([([], "count_all")])
    return counts.to_pandas().set_index(GENRE)["count_all"].rename("unique_artists")


def _pairs_table(pairs: pa.Table | pd.DataFrame) -> pa.Table:
    """Pairs in :data:`PAIRS_SCHEMA`, without the pair of a missing ``artists`` (not an artist)."""
    if isinstance(pairs, pd.DataFrame):
        pairs = pa.Table.from_pandas(pairs, preserve_index=False)
    pairs = pairs.select(PAIRS_SCHEMA.names).cast(PAIRS_SCHEMA)
    return pairs.filter(pc.is_valid(pairs["artists"]))


def _empty_partial() -> SummaryPartial:
    genres = pd.DataFrame(0, index=pd.Index([], name=GENRE), columns=_GENRE_COLUMNS)
    return SummaryPartial(genres, PAIRS_SCHEMA.empty_table())


def merge_summaries(parts: Sequence[SummaryPartial]) -> SummaryPartial:
    """The partial of all the rows of ``parts``."""
    genres = pd.concat([p.genres for p in parts]).groupby(level=0).sum()
    pairs = pa.concat_tables([p.pairs for p in parts])
    return SummaryPartial(genres, _distinct_pairs(pairs))


def finalize_summary(part: SummaryPartial, artists: pd.Series | None = None) -> pd.DataFrame:
    """The genre summary of DESIGN.md, one row per genre sorted by genre; the distinct artists
    per genre come from the partial's pairs unless given."""
    g = part.genres.sort_index()
    rows = g["rows"]
    hist = g[_HIST].to_numpy() > 0
    out = pd.DataFrame(index=g.index)
    out["tracks"] = rows.astype("int64")
    artists = unique_artists(part.pairs) if artists is None else artists
    out["unique_artists"] = artists.reindex(g.index, fill_value=0)
    out["explicit_share"] = g["explicit"] / rows
    pop = np.arange(POPULARITY_BINS)
    out["popularity_mean"] = (g[_HIST].to_numpy() * pop).sum(axis=1) / rows
    out["popularity_min"] = np.where(hist, pop, POPULARITY_BINS).min(axis=1)
    out["popularity_max"] = np.where(hist, pop, -1).max(axis=1)
    for col, total in zip(MEAN_COLUMNS, _SUMS, strict=True):
        out[f"{col}_mean"] = g[total] / rows
    out.index.name = GENRE
    return out.reset_index().astype({"unique_artists": "int64"})[list(schema.SUMMARY_COLUMNS)]


# -- top tracks ---------------------------------------------------------------------------------


def top_partial(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most popular rows of each genre (ties by track_id), sorted by genre.

    Rows below their genre's n-th popularity are dropped first with integer sorts only, so
    the sort on text keys runs on a few rows per genre.
    """
    codes = pd.factorize(df[GENRE])[0]
    pop = df["popularity"].to_numpy()
    order = np.lexsort((-pop, codes))
    rank = pd.Series(codes[order]).groupby(codes[order]).cumcount().to_numpy()
    cut = pd.Series(pop[order][rank == n - 1], index=codes[order][rank == n - 1])
    floor = cut.reindex(range(codes.max() + 1 if len(codes) else 0), fill_value=-1).to_numpy()
    candidates = df.loc[pop >= floor[codes], TOP_FIELDS] if len(df) else df[TOP_FIELDS]
    ordered = candidates.sort_values(
        [GENRE, "popularity", TRACK_ID], ascending=[True, False, True], kind="stable"
    )
    return ordered.groupby(GENRE, sort=False, observed=True).head(n)


def top_partial_arrow(table: pa.Table, genres: pd.DataFrame, n: int) -> pd.DataFrame:
    """:func:`top_partial` of an Arrow table whose summary partial's ``genres`` is known: its
    popularity histogram gives each genre's n-th highest popularity, so Arrow drops every
    row below it and only a few rows per genre reach pandas."""
    counts = genres[_HIST].to_numpy()[:, ::-1].cumsum(axis=1)  # rows at or above 100, 99, ...
    floor = POPULARITY_BINS - 1 - np.argmax(counts >= n, axis=1)
    floor[counts[:, -1] < n] = 0  # a genre with fewer than n rows keeps them all
    at = pc.index_in(table[GENRE], value_set=pa.array(genres.index, pa.string()))
    keep = pc.greater_equal(table["popularity"], pc.take(pa.array(floor), at))
    return top_partial(table.filter(keep).select(TOP_FIELDS).to_pandas(), n)


def merge_tops(parts: Sequence[pd.DataFrame], n: int) -> pd.DataFrame:
    """Merge per-partition top rows into the top rows of all of them."""
    return top_partial(pd.concat(parts, ignore_index=True), n)


def finalize_top(part: pd.DataFrame) -> pd.DataFrame:
    """Number the rows of each genre from 1: the top tracks of DESIGN.md."""
    out = part.reset_index(drop=True)
    out.insert(1, "rank", out.groupby(GENRE, sort=False).cumcount().astype("int64") + 1)
    return out[list(schema.TOP_COLUMNS)]


# -- the same logic on a pandas or a Dask frame -------------------------------------------------


def tree_reduce(parts: list[Any], merge: Callable[[list[Any]], Any], split_every: int = 8) -> Any:
    """Merge ``parts`` in groups of ``split_every`` until one is left (works on Delayed too)."""
    while len(parts) > 1:
        parts = [merge(parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def _reduce(df: Any, partial: Callable, merge: Callable, finalize: Callable) -> Any:
    """Run a partial/merge/finalize triple on a pandas frame, or lazily on a Dask frame."""
    if isinstance(df, pd.DataFrame):
        return finalize(partial(df))
    import dask

    parts = [dask.delayed(partial)(p) for p in df.to_delayed()]
    return dask.delayed(finalize)(tree_reduce(parts, dask.delayed(merge)))


def genre_summary(df: Any) -> Any:
    """The genre summary of clean rows: a pandas frame, or a Delayed one for a Dask frame."""
    return _reduce(df, summary_partial, merge_summaries, finalize_summary)


def top_tracks(df: Any, n: int = 10) -> Any:
    """The top ``n`` tracks of each genre: a pandas frame, or a Delayed one for a Dask frame."""
    return _reduce(df, lambda p: top_partial(p, n), lambda ps: merge_tops(ps, n), finalize_top)


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
