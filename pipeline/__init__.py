"""genre-pipeline: organise a CSV of music tracks by genre with Dask.

The same functions the CLI uses, for notebooks and scripts::

    from pipeline import read_tracks, drop_duplicate_tracks, genre_summary, summarise

    tracks = read_tracks("data/dataset.csv")  # Dask DataFrames: tracks.clean, tracks.rejected
    genre_summary(drop_duplicate_tracks(tracks.clean)).compute()
    summarise(tracks.clean, by="artists", split_out=4).compute()  # the same statistics, any key
    tracks.clean.groupby("artists")["popularity"].mean().compute()  # any groupby of your own

    from pipeline import Config, run_pipeline, generate_tracks

(``run_pipeline`` and ``generate_tracks``, not ``run`` and ``generate``: those names are the
modules behind ``python -m pipeline.run`` and ``python -m pipeline.generate``.) Everything but
``Config`` is imported on first use: ``import pipeline`` imports neither pandas nor Dask (so
that ``python -m pipeline.run`` imports them where it chooses how: ``memory.imports_frozen``).
"""

from pathlib import Path
from typing import Any

from pipeline.config import Config

__all__ = [
    "SUMMARY",
    "Config",
    "Stat",
    "Tracks",
    "drop_duplicate_tracks",
    "generate_tracks",
    "genre_summary",
    "read_tracks",
    "run_pipeline",
    "summarise",
    "top_tracks",
]


def run_pipeline(cfg: Config) -> dict:
    """Run the whole job for ``cfg`` (as ``python -m pipeline.run`` does); return the manifest."""
    from pipeline.execute import run

    return run(cfg, given_input=True).manifest


def generate_tracks(path: str | Path, rows: int = 114_000, seed: int = 42) -> Path:
    """Write a synthetic tracks CSV (see :func:`pipeline.generate.generate`)."""
    from pipeline.generate import generate as _generate

    return _generate(path, rows=rows, seed=seed)


def __getattr__(name: str) -> Any:
    if name in ("read_tracks", "Tracks"):
        from pipeline import read

        return getattr(read, name)
    if name in ("drop_duplicate_tracks", "top_tracks"):
        from pipeline import transforms

        return getattr(transforms, name)
    if name in ("genre_summary", "summarise", "SUMMARY", "Stat"):
        from pipeline import summary

        return getattr(summary, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
