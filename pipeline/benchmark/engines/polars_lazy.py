"""Polars, lazily: ``scan_csv`` of the needed columns, one ``group_by``. Optional engine."""

from __future__ import annotations

import pandas as pd
import polars as pl

from pipeline import schema
from pipeline.schema import GENRE, MEAN_COLUMNS, SUMMARY_INPUT

_TYPES = {"str": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row (empty artists are null and not counted, as in pandas)."""
    types = {c: _TYPES[schema.BY_NAME[c].kind] for c in SUMMARY_INPUT}
    pop = pl.col("popularity")
    frame = (
        pl.scan_csv(path, schema_overrides=types)
        .select(SUMMARY_INPUT)
        .group_by(GENRE)
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
        .collect()
    )
    return frame.to_pandas().astype({"tracks": "int64", "unique_artists": "int64"})
