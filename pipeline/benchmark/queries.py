"""The ``read`` workload: the same queries over each engine's ``tracks/`` dataset.

What a user of the dataset does next, with the two engines people read Parquet with: DuckDB
(``read_parquet`` with hive partitioning) and Polars (``scan_parquet``). Two queries each:

- every row: rows, mean popularity and the longest track per genre;
- one genre (the first by name; its directory only) with a filter on a column: rows and mean
  danceability of its tracks with a popularity of at least 50.

The dataset is the one the engine's ``full`` workload wrote (the runner writes it once, untimed,
before the counted runs); the answers are checked against those over pandas' dataset, so two
datasets with different rows cannot pass.

``read(tracks, phases)`` -> (DuckDB every row, DuckDB one genre, Polars every row, Polars one
genre), frames sorted by genre.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from pipeline.schema import GENRE

POPULAR = 50


def read(tracks: str, phases: dict[str, float]) -> tuple[pd.DataFrame, ...]:
    """The four answers (see the module's docstring) over the dataset under ``tracks``."""
    genre = first_genre(tracks)
    return (*_duckdb(tracks, genre), *_polars(tracks, genre))


def first_genre(tracks: str) -> str:
    """The first genre by name, from the dataset's ``track_genre=...`` directories."""
    prefix = f"{GENRE}="
    names = (p.name for p in Path(tracks).iterdir() if p.name.startswith(prefix))
    return unquote(min(names)[len(prefix) :])


def _files(tracks: str) -> str:
    return str(Path(tracks) / "**" / "*.parquet")


def _duckdb(tracks: str, genre: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    import duckdb

    source = f"read_parquet('{_files(tracks)}', hive_partitioning = true)"
    with duckdb.connect() as con:
        every = con.sql(
            f"""SELECT {GENRE}, count(*) AS tracks, avg(popularity) AS popularity_mean,
                       max(duration_ms) AS duration_ms_max
                FROM {source} GROUP BY {GENRE} ORDER BY {GENRE}"""
        ).df()
        one = con.execute(
            f"""SELECT {GENRE}, count(*) AS tracks, avg(danceability) AS danceability_mean
                FROM {source} WHERE {GENRE} = ? AND popularity >= ?
                GROUP BY {GENRE} ORDER BY {GENRE}""",
            [genre, POPULAR],
        ).df()
    return every, one


def _polars(tracks: str, genre: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    import polars as pl

    frame = pl.scan_parquet(_files(tracks), hive_partitioning=True)
    every = (
        frame.group_by(GENRE)
        .agg(
            pl.len().alias("tracks"),
            pl.col("popularity").mean().alias("popularity_mean"),
            pl.col("duration_ms").max().alias("duration_ms_max"),
        )
        .sort(GENRE)
    )
    one = (
        frame.filter((pl.col(GENRE) == genre) & (pl.col("popularity") >= POPULAR))
        .group_by(GENRE)
        .agg(pl.len().alias("tracks"), pl.col("danceability").mean().alias("danceability_mean"))
        .sort(GENRE)
    )
    every, one = pl.collect_all([every, one])
    return every.to_pandas(), one.to_pandas()
