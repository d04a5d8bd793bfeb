"""pandas in one process: ``pd.read_csv`` with the C parser, then the project's transforms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline import schema, transforms
from pipeline.benchmark.engines import TOP
from pipeline.outputs import SUMMARY_CSV, TOP_CSV
from pipeline.publish import write_csv, write_tracks
from pipeline.summary import MERGEABLE, genre_summary, inputs


def read(path: str, columns: Sequence[str], engine: str = "c") -> pd.DataFrame:
    """Parse only ``columns`` of the CSV, with the schema's dtypes."""
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in columns}
    return pd.read_csv(path, usecols=list(columns), dtype=dtypes, engine=engine)


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row, read with the C parser."""
    return genre_summary(read(path, inputs(MERGEABLE)), MERGEABLE)


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything ``pipeline.run`` does, on one frame read with the C parser."""
    return organise(read(path, schema.NAMES), out_dir)


def organise(df: pd.DataFrame, out_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate, deduplicate, summarise and rank one frame; write its rows and CSV outputs.

    Uses the functions of ``pipeline.transforms`` and ``pipeline.publish`` that the pipeline
    runs on its partitions, here once on the whole frame.
    """
    reasons = transforms.invalid_reasons(df)
    clean = transforms.drop_duplicate_tracks(transforms.split_valid(df, reasons))
    write_tracks(clean, f"{out_dir}/tracks")
    summary_, top = genre_summary(clean), transforms.top_tracks(clean, TOP)
    write_csv(summary_, str(Path(out_dir, SUMMARY_CSV)))
    write_csv(top, str(Path(out_dir, TOP_CSV)))
    return summary_, top
