"""Is an engine's answer the pandas engine's answer? Run outside every timed region.

Same columns, same genres in the same order, integer columns exactly equal, floats equal to
1e-9 relative (engines sum in different orders), text equal (empty and missing alike). For the
``full`` workload the Parquet rows written per genre must also equal the summary's counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from pipeline.schema import GENRE

RTOL = 1e-9


def compare(got: Any, want: Any) -> str | None:
    """Why ``got`` differs from ``want`` (a frame, or a tuple of frames), or None if equal."""
    if isinstance(want, tuple):
        if not isinstance(got, tuple) or len(got) != len(want):
            return f"expected {len(want)} frames, got {type(got).__name__}"
        problems = (compare_frames(g, w) for g, w in zip(got, want, strict=True))
        return next((p for p in problems if p), None)
    return compare_frames(got, want)


def compare_frames(got: pd.DataFrame, want: pd.DataFrame) -> str | None:
    """Why two result frames differ, or None if they are equal."""
    if not isinstance(got, pd.DataFrame):
        return f"expected a DataFrame, got {type(got).__name__}"
    if list(got.columns) != list(want.columns):
        return f"columns {list(got.columns)} != {list(want.columns)}"
    got_genres, want_genres = _text(got[GENRE]), _text(want[GENRE])
    if got_genres != want_genres:
        missing = sorted(set(want_genres) - set(got_genres))
        extra = sorted(set(got_genres) - set(want_genres))
        return f"genres differ (missing {missing[:3]}, extra {extra[:3]}, or order)"
    for col in want.columns:
        bad = _unequal(got[col].reset_index(drop=True), want[col].reset_index(drop=True))
        if bad is not None:
            row = int(bad)
            return (
                f"{col} of {want_genres[row]} (row {row}): "
                f"{got[col].iloc[row]!r} != {want[col].iloc[row]!r}"
            )
    return None


def _unequal(got: pd.Series, want: pd.Series) -> int | None:
    """The first row where the columns differ under the rules above, or None."""
    if pd.api.types.is_float_dtype(want):
        a, b = got.to_numpy(dtype=float), want.to_numpy(dtype=float)
        same = np.isclose(a, b, rtol=RTOL, atol=0.0) | (np.isnan(a) & np.isnan(b))
    elif pd.api.types.is_bool_dtype(want) or pd.api.types.is_integer_dtype(want):
        if not pd.api.types.is_numeric_dtype(got):
            return 0
        same = got.to_numpy() == want.to_numpy()
    else:
        same = np.array(_text(got)) == np.array(_text(want))
    wrong = np.flatnonzero(~same)
    return int(wrong[0]) if len(wrong) else None


def _text(values: pd.Series) -> list[str]:
    """Values as text, missing ones as the empty string (as they are written in a CSV)."""
    return [str(v) for v in values.astype(object).where(values.notna(), "")]


def compare_tracks(root: Path, summary: pd.DataFrame) -> str | None:
    """Why the Parquet rows per genre under ``root`` differ from ``summary``'s tracks, or None."""
    if not root.is_dir():
        return f"no Parquet dataset at {root}"
    counts: dict[str, int] = {}
    for fragment in ds.dataset(root, format="parquet", partitioning="hive").get_fragments():
        genre = str(ds.get_partition_keys(fragment.partition_expression).get(GENRE))
        counts[genre] = counts.get(genre, 0) + fragment.count_rows()
    want = dict(zip(_text(summary[GENRE]), summary["tracks"].astype(int), strict=True))
    wrong = [g for g in sorted(set(counts) | set(want)) if counts.get(g) != want.get(g)]
    if wrong:
        g = wrong[0]
        return f"Parquet rows of {g}: {counts.get(g, 0)} != {want.get(g, 0)} ({len(wrong)} genres)"
    return None
