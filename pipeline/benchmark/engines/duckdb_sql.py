"""DuckDB: one SQL aggregation over ``read_csv`` (it parses only the columns used). Optional."""

from __future__ import annotations

import duckdb
import pandas as pd

from pipeline import schema
from pipeline.schema import GENRE, MEAN_COLUMNS, SUMMARY_INPUT

_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}
_AGGREGATES = (
    "count(*) AS tracks",
    "count(DISTINCT artists) AS unique_artists",
    "avg(explicit::DOUBLE) AS explicit_share",
    "avg(popularity) AS popularity_mean",
    "min(popularity) AS popularity_min",
    "max(popularity) AS popularity_max",
    *(f"avg({c}) AS {c}_mean" for c in MEAN_COLUMNS),
)


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row (empty fields are NULL, as pandas' NaN)."""
    query = (
        f"SELECT {GENRE}, {', '.join(_AGGREGATES)} "
        f"FROM read_csv($path, header = true, types = $types) GROUP BY {GENRE} ORDER BY {GENRE}"
    )
    types = {c: _TYPES[schema.BY_NAME[c].kind] for c in SUMMARY_INPUT}
    with duckdb.connect() as con:
        return con.execute(query, {"path": path, "types": types}).df()
