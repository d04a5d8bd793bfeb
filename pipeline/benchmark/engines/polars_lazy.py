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
from pipeline.schema import GENRE, MEAN_COLUMNS, SUMMARY_INPUT, TOP_COLUMNS, TRACK_ID

_TYPES = {"str": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row (empty artists are null and not counted, as in pandas)."""
    types = {c: _TYPES[schema.BY_NAME[c].kind] for c in SUMMARY_INPUT}
    frame = pl.scan_csv(path, schema_overrides=types).select(SUMMARY_INPUT)
    return _summary(frame).collect().to_pandas().astype(_COUNTS)


_COUNTS = {"tracks": "int64", "unique_artists": "int64"}


def _summary(frame: pl.LazyFrame) -> pl.LazyFrame:
    pop = pl.col("popularity")
    return (
        frame.group_by(GENRE)
        .agg(
            pl.len().alias("tracks"),
            pl.col("artists").drop_nulls().n_unique().alias("unique_artists"),
            pl.col("explicit").mean().alias("explicit_share"),
            pop.mean().alias("popularity_mean"),
            pop.min().alias("popularity_min"),
            pop.max().alias("popularity_max"),
            *(pl.col(c).mean().alias(f"{c}_mean") for c in MEAN_COLUMNS),
        )
        .sort(GENRE)
    )


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
    return summary_.to_pandas().astype(_COUNTS), top.to_pandas().astype({"rank": "int64"})
