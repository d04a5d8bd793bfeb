"""pandas in one process with ``pd.read_csv(engine="pyarrow")`` (multithreaded parsing)."""

from __future__ import annotations

import pandas as pd

from pipeline import schema, transforms
from pipeline.benchmark.engines.pandas_c import organise, read
from pipeline.schema import SUMMARY_INPUT


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary of every row, read with the pyarrow parser."""
    return transforms.genre_summary(read(path, SUMMARY_INPUT, engine="pyarrow"))


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything ``pipeline.run`` does, on one frame read with the pyarrow parser."""
    return organise(read(path, schema.NAMES, engine="pyarrow"), out_dir)
