"""genre-pipeline: organise a CSV of music tracks by genre with Dask.

The same functions the CLI uses, for notebooks and scripts::

    from pipeline import Config, run_pipeline, generate_tracks, genre_summary, top_tracks

(``run_pipeline`` and ``generate_tracks``, not ``run`` and ``generate``: those names are the
modules behind ``python -m pipeline.run`` and ``python -m pipeline.generate``.)
"""

from pathlib import Path

from pipeline.config import Config
from pipeline.transforms import drop_duplicate_tracks, genre_summary, top_tracks

__all__ = [
    "Config",
    "drop_duplicate_tracks",
    "generate_tracks",
    "genre_summary",
    "run_pipeline",
    "top_tracks",
]


def run_pipeline(cfg: Config) -> dict:
    """Run the whole job for ``cfg`` (as ``python -m pipeline.run`` does); return the manifest."""
    from pipeline.run import run as _run

    return _run(cfg, given_input=True)


def generate_tracks(path: str | Path, rows: int = 114_000, seed: int = 42) -> Path:
    """Write a synthetic tracks CSV (see :func:`pipeline.generate.generate`)."""
    from pipeline.generate import generate as _generate

    return _generate(path, rows=rows, seed=seed)
