"""The approach this project replaces: CSV chunks mapped over a ``multiprocessing.Pool``.

The parent parses the CSV in chunks (``pd.read_csv(chunksize=...)``) and sends each chunk to
one of ``os.cpu_count()`` worker processes, which return its additive partial (per genre:
rows, sums, minimum and maximum, and the distinct artists); the parent merges the partials.
Summary only: the old script did no cleaning or deduplication.
"""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd

from pipeline import schema
from pipeline.schema import GENRE, MEAN_COLUMNS, SUMMARY_INPUT

CHUNK_ROWS = 100_000  # the old script used 1,000, which mostly measured pickling
_SUMMED = ["explicit", "popularity", *MEAN_COLUMNS]


def process_chunk(chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk's partial: per-genre rows, sums, min and max; its (genre, artists) pairs."""
    by_genre = chunk.groupby(GENRE)
    stats = (
        by_genre[_SUMMED]
        .sum()
        .assign(
            rows=by_genre.size(),
            popularity_min=by_genre["popularity"].min(),
            popularity_max=by_genre["popularity"].max(),
        )
    )
    return stats, chunk[[GENRE, "artists"]].dropna().drop_duplicates()


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row: chunks parsed here, aggregated in a process pool."""
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in SUMMARY_INPUT}
    chunks = pd.read_csv(path, usecols=list(SUMMARY_INPUT), dtype=dtypes, chunksize=CHUNK_ROWS)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        parts = list(pool.imap(process_chunk, chunks))
    by_genre = pd.concat([stats for stats, _ in parts]).groupby(level=0)
    stats = by_genre.sum().assign(
        popularity_min=by_genre["popularity_min"].min(),
        popularity_max=by_genre["popularity_max"].max(),
    )
    pairs = pd.concat([pairs for _, pairs in parts]).drop_duplicates()
    out = pd.DataFrame(
        {
            "tracks": stats["rows"],
            "unique_artists": pairs.groupby(GENRE).size().reindex(stats.index, fill_value=0),
            "explicit_share": stats["explicit"] / stats["rows"],
            "popularity_mean": stats["popularity"] / stats["rows"],
            "popularity_min": stats["popularity_min"],
            "popularity_max": stats["popularity_max"],
            **{f"{c}_mean": stats[c] / stats["rows"] for c in MEAN_COLUMNS},
        }
    )
    return out.rename_axis(GENRE).reset_index().sort_values(GENRE, ignore_index=True)
