"""The genre summary as a declaration: one table of statistics, and the kernels it drives.

:data:`SUMMARY` lists every column of ``genre_summary.csv`` after the key: its name, its
statistic and the column it reads. Everything else follows from that table: the columns a run
reads for it, the Arrow group-by of a partition and the merge of such partials (the statistics
that merge), the per-group step on whole groups (exact medians), the pandas and Dask paths, the
Polars and DuckDB engines' expressions and the outputs page of the docs. A statistic of a known
kind is one line here (and its test); a new kind is one entry of :data:`KINDS` and one
expression per engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.schema import GENRE
from pipeline.transforms import arrow_table

Parts = Mapping[str, pd.Series]  # a statistic's merged primitives, by primitive name


@dataclass(frozen=True)
class Kind:
    """A kind of statistic: the primitives of Arrow's hash group-by it is made of (partials
    that merge across partitions), and the statistic from them; no primitives: it needs each
    group whole (a median)."""

    about: str  # for the docs: what the statistic is
    primitives: tuple[str, ...]
    finish: Callable[[Parts], np.ndarray] | None = None


def _ratio(p: Parts) -> np.ndarray:
    return p["sum"].to_numpy("float64") / p["count"].to_numpy("float64")


def _same(name: str) -> Callable[[Parts], np.ndarray]:
    return lambda p: p[name].to_numpy(p[name].dtype.numpy_dtype)


KINDS: dict[str, Kind] = {
    "count": Kind("rows", ("count_all",), lambda p: p["count_all"].to_numpy("int64")),
    "distinct": Kind(
        "distinct values as written (an empty field is none)",
        ("distinct",),
        lambda p: p["distinct"].list.len().fillna(0).to_numpy("int64"),
    ),
    "share": Kind("share of rows where it is true", ("sum", "count"), _ratio),
    "mean": Kind("mean", ("sum", "count"), _ratio),
    "min": Kind("minimum", ("min",), _same("min")),
    "max": Kind("maximum", ("max",), _same("max")),
    "median": Kind("exact median (the mean of the two middle values for an even count)", ()),
}
# How partials of a primitive merge (distinct: the lists flattened, then distinct again).
_MERGE = {"count_all": "sum", "sum": "sum", "count": "sum", "min": "min", "max": "max"}
_VALID = pc.CountOptions(mode="only_valid")  # a missing value is no value


@dataclass(frozen=True)
class Stat:
    """One column of the summary: its name, its kind (:data:`KINDS`), the column it reads."""

    name: str
    kind: str
    column: str | None = None  # None for a count of rows

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown statistic {self.kind!r}; choose among {', '.join(KINDS)}")

    @property
    def merges(self) -> bool:
        """Made of partials that merge (else it needs each group whole)."""
        return bool(KINDS[self.kind].primitives)

    def part(self, primitive: str) -> str:
        """The column of Arrow's group-by output that holds ``primitive`` of this statistic."""
        return primitive if self.column is None else f"{self.column}_{primitive}"


#: The columns of ``genre_summary.csv`` after ``track_genre``, in order: one line each.
SUMMARY: tuple[Stat, ...] = (
    Stat("tracks", "count"),
    Stat("unique_artists", "distinct", "artists"),
    Stat("explicit_share", "share", "explicit"),
    Stat("popularity_mean", "mean", "popularity"),
    Stat("popularity_min", "min", "popularity"),
    Stat("popularity_max", "max", "popularity"),
    Stat("duration_ms_mean", "mean", "duration_ms"),
    Stat("danceability_mean", "mean", "danceability"),
    Stat("energy_mean", "mean", "energy"),
    Stat("loudness_mean", "mean", "loudness"),
    Stat("speechiness_mean", "mean", "speechiness"),
    Stat("acousticness_mean", "mean", "acousticness"),
    Stat("instrumentalness_mean", "mean", "instrumentalness"),
    Stat("liveness_mean", "mean", "liveness"),
    Stat("valence_mean", "mean", "valence"),
    Stat("tempo_mean", "mean", "tempo"),
    Stat("popularity_median", "median", "popularity"),
    Stat("duration_ms_median", "median", "duration_ms"),
    Stat("tempo_median", "median", "tempo"),
)
#: The statistics that merge: the benchmark's summary workload, the group-by of the study.
MERGEABLE: tuple[Stat, ...] = tuple(s for s in SUMMARY if s.merges)


def columns(stats: Sequence[Stat] = SUMMARY, by: str = GENRE) -> tuple[str, ...]:
    """The columns of a summary: the key, then every statistic."""
    return (by, *(s.name for s in stats))


def inputs(stats: Sequence[Stat] = SUMMARY, by: str = GENRE) -> tuple[str, ...]:
    """The columns a summary reads: the key, then every statistic's column, each once."""
    return tuple(dict.fromkeys([by, *(s.column for s in stats if s.column)]))


def _primitives(stats: Sequence[Stat]) -> dict[str, tuple[str | None, str]]:
    """Every primitive the statistics that merge need, each once: its column in Arrow's
    group-by output -> (input column, primitive)."""
    return {
        s.part(primitive): (s.column, primitive)
        for s in stats
        for primitive in KINDS[s.kind].primitives
    }


def _aggregations(stats: Sequence[Stat]) -> list[tuple]:
    """Arrow's hash aggregations for the primitives of ``stats``."""
    out = []
    for column, primitive in _primitives(stats).values():
        options = (_VALID,) if primitive in ("count", "distinct") else ()
        out.append(([] if column is None else column, primitive, *options))
    return out


def _keyed(df: pd.DataFrame, by: str, stats: Sequence[Stat]) -> pa.Table:
    """The key and the input columns as an Arrow table, without the rows that have no key
    (as pandas' group-by drops them); text as Arrow's ``string`` (pandas' ``str`` columns
    arrive as ``large_string``, on which the distinct count took 2.4x as long) and keys
    decoded from dictionaries (categoricals)."""
    table = arrow_table(df[list(inputs(stats, by))])
    if table[by].null_count:
        table = table.filter(pc.is_valid(table[by]))
    for i, field in enumerate(table.schema):
        if pa.types.is_large_string(field.type) or pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table[field.name].cast(pa.string()))
    return table


# -- the statistics that merge: per partition, then merged ---------------------------------------


def partial(df: pd.DataFrame, by: str = GENRE, stats: Sequence[Stat] = MERGEABLE) -> pd.DataFrame:
    """The primitives of every statistic that merges, per group of ``df``: one pass of Arrow's
    hash group-by, which releases Python's lock (partitions in threads run at once)."""
    table = _keyed(df, by, stats)
    parts = table.group_by(by, use_threads=False).aggregate(_aggregations(stats))
    return parts.to_pandas(types_mapper=pd.ArrowDtype)


def merge(parts: pd.DataFrame, by: str = GENRE, stats: Sequence[Stat] = MERGEABLE) -> pd.DataFrame:
    """Merge concatenated :func:`partial` outputs into one row per group."""
    table = arrow_table(parts).combine_chunks()
    primitives = _primitives(stats)
    lists = [n for n, (_, primitive) in primitives.items() if primitive == "distinct"]
    merged = [(n, _MERGE[primitive]) for n, (_, primitive) in primitives.items() if n not in lists]
    out = table.group_by(by, use_threads=False).aggregate(merged)
    out = out.rename_columns({f"{n}_{how}": n for n, how in merged})
    frame = out.to_pandas(types_mapper=pd.ArrowDtype)
    for name in lists:  # the lists of every partial, flattened, distinct again
        values = table[name]
        flat = pa.table(
            {by: table[by].take(pc.list_parent_indices(values)), name: pc.list_flatten(values)}
        )
        again = flat.group_by(by, use_threads=False).aggregate([(name, "distinct")])
        again = again.rename_columns({f"{name}_distinct": name})
        frame = frame.merge(again.to_pandas(types_mapper=pd.ArrowDtype), on=by, how="left")
    return frame


def finish(
    parts: pd.DataFrame,
    by: str = GENRE,
    stats: Sequence[Stat] = MERGEABLE,
    medians: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The summary from merged primitives (and, for the statistics that need whole groups,
    ``medians``: one column per such statistic, indexed by the key): numpy dtypes, one row
    per group, sorted by the key."""
    p = parts.sort_values(by, kind="stable", ignore_index=True)
    out = pd.DataFrame({by: p[by].astype("str")})
    for s in stats:
        kind = KINDS[s.kind]
        if kind.finish:
            out[s.name] = kind.finish({m: p[s.part(m)] for m in kind.primitives})
        else:
            out[s.name] = medians[s.name].reindex(out[by]).to_numpy("float64")
    return out


# -- whole groups: every statistic at once ------------------------------------------------------


def whole(df: pd.DataFrame, by: str = GENRE, stats: Sequence[Stat] = SUMMARY) -> pd.DataFrame:
    """The summary of ``df`` whose groups are all whole in it: the primitives of one group-by,
    finished, and the statistics that need whole groups (:func:`medians`)."""
    table = _keyed(df, by, stats)
    holistic = [s for s in stats if not s.merges]
    parts = table.group_by(by, use_threads=False).aggregate(_aggregations(stats))
    found = medians(table, by, holistic, parts.num_rows) if holistic else None
    return finish(parts.to_pandas(types_mapper=pd.ArrowDtype), by, stats, found)


LARGE_GROUP = 512  # rows: above it, selecting in each group's slice beats pandas' group-by


def medians(table: pa.Table, by: str, stats: Sequence[Stat], groups: int) -> pd.DataFrame:
    """The exact median per group of each statistic's column, indexed by the key (missing
    values left out); ``groups``: how many keys ``table`` holds. Each group's rows side by
    side, in large groups (as the genre gather leaves them): numpy's selection in each group's
    slice, else pandas' group-by median (2.3x slower on the genres of a gathered partition,
    faster for many small groups); both select without sorting, outside Python's lock."""
    runs = pc.run_end_encode(table[by].combine_chunks())
    if len(runs.values) == groups and len(table) >= LARGE_GROUP * groups:
        ends = runs.run_ends.to_numpy().tolist()
        bounds = list(zip([0, *ends][:-1], ends, strict=True))
        keys = runs.values.to_numpy(zero_copy_only=False)
        values = {s.name: [_median(table[s.column], a, b) for a, b in bounds] for s in stats}
        return pd.DataFrame(values, index=pd.Index(keys, name=by))
    encoded = pc.dictionary_encode(table[by]).combine_chunks()
    columns = {s.name: table[s.column].to_numpy() for s in stats}
    grouped = pd.DataFrame(columns).groupby(encoded.indices.to_numpy(), sort=False).median()
    keys = encoded.dictionary.take(pa.array(grouped.index.to_numpy(), pa.int32()))
    return grouped.set_axis(pd.Index(keys.to_numpy(zero_copy_only=False), name=by))


def _median(column: pa.ChunkedArray, start: int, end: int) -> float:
    """The exact median of ``column[start:end]`` (NaN when it holds no value)."""
    values = column.slice(start, end - start)
    values = (values.drop_null() if values.null_count else values).to_numpy()
    n, half = len(values), len(values) // 2
    if n == 0:
        return float("nan")
    selected = np.partition(values, half)  # one selection, and the largest below it: 3x
    upper = selected[half]  # faster on floats than selecting both middle values
    return float(upper if n % 2 else (selected[:half].max() + upper) / 2)


# -- any frame ----------------------------------------------------------------------------------


def summarise(
    frame: Any,
    by: str = GENRE,
    stats: Sequence[Stat] = SUMMARY,
    *,
    split_out: int = 1,
    whole_groups: bool = False,
) -> Any:
    """The statistics ``stats`` of ``frame``'s clean rows per value of ``by`` (rows without a
    value dropped), one row per group: a pandas frame for a pandas frame, a lazy Dask frame for
    a Dask frame.

    On Dask: ``whole_groups`` says that every group is whole in one partition already (as after
    the run's genre gather): each partition is summarised alone. Else, when every statistic
    merges and ``split_out`` is 1, a tree reduction of :func:`partial` outputs (no shuffle: few
    groups, such as 114 genres). Otherwise the needed columns are shuffled on ``by`` first, so
    that no group is split and no worker holds every group: for keys with many groups (artists,
    albums) or exact medians. ``split_out``: partitions of the result; 1 is sorted by ``by``,
    more hold each group once, sorted within each partition (as Dask's own ``split_out``).
    """
    stats = tuple(stats)
    if isinstance(frame, pd.DataFrame):
        return whole(frame, by, stats)
    if split_out < 1:
        raise ValueError(f"split_out must be at least 1, got {split_out}")
    meta = whole(frame._meta, by, stats)
    if not whole_groups and split_out == 1 and all(s.merges for s in stats):
        return frame.reduction(
            partial,
            combine=merge,
            aggregate=_merged_summary,
            chunk_kwargs={"by": by, "stats": stats},
            combine_kwargs={"by": by, "stats": stats},
            aggregate_kwargs={"by": by, "stats": stats},
            meta=meta,
        )
    if not whole_groups:
        frame = frame[list(inputs(stats, by))].shuffle(
            on=by, npartitions=frame.npartitions if split_out == 1 else split_out
        )
    parts = frame.map_partitions(whole, by, stats, meta=meta)
    if split_out == 1:
        return parts.repartition(npartitions=1).map_partitions(_sorted, by, meta=meta)
    return parts if parts.npartitions == split_out else parts.repartition(npartitions=split_out)


def _merged_summary(parts: pd.DataFrame, by: str, stats: Sequence[Stat]) -> pd.DataFrame:
    return finish(merge(parts, by, stats), by, stats)


def _sorted(df: pd.DataFrame, by: str) -> pd.DataFrame:
    return df.sort_values(by, kind="stable", ignore_index=True)


def genre_summary(frame: Any, stats: Sequence[Stat] = SUMMARY, **options: Any) -> Any:
    """The genre summary of ``genre_summary.csv``: :func:`summarise` by ``track_genre``."""
    return summarise(frame, GENRE, stats, **options)


def markdown_table(stats: Sequence[Stat] = SUMMARY) -> str:
    """The summary's columns as a Markdown table (the docs' outputs page is made from it)."""
    rows = ["| column | statistic | of |", "| --- | --- | --- |"]
    for s in stats:
        of = f"`{s.column}`" if s.column else ""
        rows.append(f"| `{s.name}` | {KINDS[s.kind].about} | {of} |")
    return "\n".join(rows)
