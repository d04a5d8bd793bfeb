"""Polars, as its users write it: lazy ``scan_csv`` queries. Optional engine.

``summary``: the needed columns, one ``group_by``. ``full``: the typed rows (a value that does
not parse becomes null, and a required null rejects the row) that keep the schema's rules, the
first copy of each (track_id, genre) pair in file order (``unique(keep="first",
maintain_order=True)``), collected once; the summary and top tracks from that frame, and
``sink_parquet(pl.PartitionBy(..., key=genre))`` for the Parquet dataset (hive-style, the
genre in the path only, as the pipeline writes it).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl

from pipeline import schema
from pipeline.benchmark.engines import TOP
from pipeline.schema import GENRE, TOP_COLUMNS, TRACK_ID
from pipeline.summary import MERGEABLE, SUMMARY, Stat, inputs

_TYPES = {"str": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
# Every kind of statistic (pipeline.summary.KINDS) as a Polars expression of its column.
EXPRESSIONS = {
    "count": lambda c: pl.len(),
    "distinct": lambda c: pl.col(c).drop_nulls().n_unique(),  # a missing value is none
    "share": lambda c: pl.col(c).mean(),
    "mean": lambda c: pl.col(c).mean(),
    "min": lambda c: pl.col(c).min(),
    "max": lambda c: pl.col(c).max(),
    "median": lambda c: pl.col(c).median(),
}


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row."""
    names = inputs(MERGEABLE)
    types = {c: _TYPES[schema.BY_NAME[c].kind] for c in names}
    frame = pl.scan_csv(path, schema_overrides=types).select(names)
    return _pandas(_summary(frame, MERGEABLE).collect(), MERGEABLE)


def _summary(frame: pl.LazyFrame, stats: tuple[Stat, ...] = SUMMARY) -> pl.LazyFrame:
    aggregations = (EXPRESSIONS[s.kind](s.column).alias(s.name) for s in stats)
    return frame.group_by(GENRE).agg(*aggregations).sort(GENRE)


def _pandas(frame: pl.DataFrame, stats: tuple[Stat, ...] = SUMMARY) -> pd.DataFrame:
    """As pandas, counts as int64 (Polars counts in 32 bits)."""
    counts = {s.name: "int64" for s in stats if s.kind in ("count", "distinct")}
    return frame.to_pandas().astype(counts)


def _rules() -> pl.Expr:
    """The schema's value rules as one Polars condition."""
    conditions = [pl.lit(True)]
    for col in schema.COLUMNS:
        if col.required:
            conditions.append(pl.col(col.name).is_not_null())
        if col.low is not None:
            value = pl.col(col.name)
            conditions.append(value.is_null() | value.is_between(col.low, col.high))
    return pl.all_horizontal(conditions)


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything ``pipeline.run`` does, as Polars queries."""
    types = {c.name: _TYPES[c.kind] for c in schema.COLUMNS}
    clean = (
        pl.scan_csv(path, schema_overrides=types, ignore_errors=True)
        .select(schema.NAMES)
        .filter(_rules())
        .unique(subset=[TRACK_ID, GENRE], keep="first", maintain_order=True)
        .collect()
    )
    summary_ = _summary(clean.lazy()).collect()
    top = (
        clean.sort([GENRE, "popularity", TRACK_ID], descending=[False, True, False])
        .group_by(GENRE, maintain_order=True)
        .head(TOP)
        .with_columns(pl.int_range(1, pl.len() + 1).over(GENRE).alias("rank"))
        .select(TOP_COLUMNS)
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean.lazy().sink_parquet(pl.PartitionBy(out / "tracks", key=GENRE, include_key=False))
    summary_.write_csv(out / "genre_summary.csv")
    top.write_csv(out / "top_tracks.csv")
    return _pandas(summary_), top.to_pandas().astype({"rank": "int64"})
