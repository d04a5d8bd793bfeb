"""pandas in one process with ``pd.read_csv(engine="pyarrow")`` (multithreaded parsing)."""

from __future__ import annotations

import pandas as pd

from pipeline import schema
from pipeline.benchmark.engines.pandas_c import organise, read
from pipeline.summary import MERGEABLE, genre_summary, inputs


def summary(path: str, phases: dict[str, float]) -> pd.DataFrame:
    """The genre summary's statistics that merge, of every row, read with the pyarrow parser."""
    return genre_summary(read(path, inputs(MERGEABLE), engine="pyarrow"), MERGEABLE)


def full(path: str, out_dir: str, phases: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything ``pipeline.run`` does, on one frame read with the pyarrow parser."""
    return organise(read(path, schema.NAMES, engine="pyarrow"), out_dir)
