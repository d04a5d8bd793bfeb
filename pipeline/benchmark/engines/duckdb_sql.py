"""DuckDB, as its users write it: SQL over ``read_csv``. Optional.

``summary``: one aggregation (DuckDB parses only the columns used). ``full``: one script: the
typed rows that keep the schema's rules (``ignore_errors`` skips rows whose values do not
parse), the first copy of each (track_id, genre) pair in file order (the file's unnamed first
column numbers its rows, as in the Kaggle file), the summary and top tracks from that table,
and ``COPY ... PARTITION_BY`` for the Parquet dataset.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from pipeline import schema
from pipeline.benchmark.engines import TOP
from pipeline.schema import GENRE, TOP_COLUMNS, TRACK_ID
from pipeline.summary import MERGEABLE, SUMMARY, Stat, inputs

_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}
# Every kind of statistic (pipeline.summary.KINDS) as SQL over its column.
EXPRESSIONS = {
    "count": "count(*)",
    "distinct": "count(DISTINCT {})",  # NULL is no value
    "share": "avg({}::DOUBLE)",
    "mean": "avg({})",
    "min": "min({})",
    "max": "max({})",
    "median": "median({})",  # the mean of the two middle values for an even count
}


def _aggregates(stats: tuple[Stat, ...] = SUMMARY) -> str:
    return ", ".join(f"{EXPRESSIONS[s.kind].format(s.column)} AS {s.name}" for s in stats)


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row (empty fields are NULL, as
    pandas' NaN)."""
    query = (
        f"SELECT {GENRE}, {_aggregates(MERGEABLE)} "
        f"FROM read_csv($path, header = true, types = $types) GROUP BY {GENRE} ORDER BY {GENRE}"
    )
    types = {c: _TYPES[schema.BY_NAME[c].kind] for c in inputs(MERGEABLE)}
    with duckdb.connect() as con:
        return con.execute(query, {"path": path, "types": types}).df()


def _rules() -> str:
    """The schema's value rules as one SQL condition."""
    conditions = []
    for col in schema.COLUMNS:
        if col.required:
            conditions.append(f"{col.name} IS NOT NULL")
        if col.low is not None:
            conditions.append(
                f"({col.name} IS NULL OR {col.name} BETWEEN {col.low} AND {col.high})"
            )
    return " AND ".join(conditions)


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything ``pipeline.run`` does, as one DuckDB session."""
    types = {c.name: _TYPES[c.kind] for c in schema.COLUMNS}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        # the unnamed first column (DuckDB names it): the row's number in the file
        first = con.execute("SELECT * FROM read_csv($path) LIMIT 0", {"path": path})
        row = first.description[0][0]
        con.execute(
            f"""
            CREATE TEMP TABLE tracks AS
            SELECT * EXCLUDE (copy) FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY {TRACK_ID}, {GENRE} ORDER BY "{row}"
                ) AS copy
                FROM read_csv($path, header = true, types = $types, ignore_errors = true)
                WHERE {_rules()}
            )
            WHERE copy = 1
            """,
            {"path": path, "types": types},
        )
        summary_ = con.execute(
            f"SELECT {GENRE}, {_aggregates()} FROM tracks GROUP BY {GENRE} ORDER BY {GENRE}"
        ).df()
        top = con.execute(
            f"""
            SELECT {", ".join(TOP_COLUMNS)} FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY {GENRE} ORDER BY popularity DESC, {TRACK_ID}
                ) AS rank
                FROM tracks
            )
            WHERE rank <= {TOP} ORDER BY {GENRE}, rank
            """
        ).df()
        con.execute(
            f"""COPY (SELECT * EXCLUDE ("{row}") FROM tracks) TO '{out / "tracks"}' """
            f"(FORMAT parquet, PARTITION_BY ({GENRE}))"
        )
    summary_.to_csv(out / "genre_summary.csv", index=False)
    top.to_csv(out / "top_tracks.csv", index=False)
    return summary_, top
