"""Shared fixtures: small generated inputs and an independent plain-pandas reference."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dask.dataframe as dd
import hypothesis  # noqa: F401  (see below)
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import schema
from pipeline.generate import generate
from pipeline.outputs import CONTRACT, OUTPUTS
from pipeline.schema import FILE_COLUMNS

HEADER = ",".join(FILE_COLUMNS)
CSVS = tuple(o.name for o in OUTPUTS if not o.directory)  # the run's CSV outputs
FILES = set(CONTRACT)  # every file and directory of a complete output

# hypothesis is imported above, at collection, on purpose: its pytest plugin imports it at the
# end of a session otherwise (when no test file did), and pytest's parse of it there failed
# with "SystemError: AST constructor recursion depth mismatch" after the cluster tests had
# passed, making the session exit 1 (a CPython 3.11 bug: python/cpython#106905,
# pytest-dev/pytest#10763); run alone, test_run, test_scheduler and test_notebooks hit it.


def track_row(i: int, track: str, genre: str, pop: int | str, artists: str = "A") -> str:
    """One line of a tracks CSV with the given id, genre, popularity and artists."""
    return (
        f'{i},{track},"{artists}",Album,Song,{pop},200000,{i % 2 == 0},0.5,0.{i % 10},1,-5.0,'
        f"1,0.1,0.1,0.0,0.1,0.5,120.0,4,{genre}"
    )


def tiny() -> pd.DataFrame:
    """Nine clean rows over three genres; one repeated (track_id, genre) pair; popularity ties."""
    rows = [
        ("a", "X;Y", "jazz", 50, True, 0.5),
        ("b", "X", "jazz", 70, False, 0.1),
        ("a", "Z", "jazz", 90, False, 0.9),  # repeats (a, jazz): dropped, first kept
        ("c", None, "jazz", 70, False, 0.3),  # empty artists: not an artist
        ("a", "X;Y", "rock", 10, True, 0.2),  # same track, other genre: kept
        ("d", "Q, R", "rock", 10, False, 0.4),
        ("e", "Q, R", "rock", 99, True, 0.6),
        ("f", "Ü", "pop", 0, False, 0.7),
        ("g", "Ü", "pop", 100, False, 0.8),
    ]
    df = pd.DataFrame(
        rows,
        columns=["track_id", "artists", "track_genre", "popularity", "explicit", "danceability"],
    )
    for col in schema.NAMES:
        if col not in df:
            kind = schema.BY_NAME[col].kind
            df[col] = "name" if kind == "str" else np.arange(len(df)) % 2
    return df[list(schema.NAMES)].astype(schema.PANDAS_DTYPES)


def partitionings(df: pd.DataFrame) -> list[dd.DataFrame]:
    return [dd.from_pandas(df, npartitions=n, sort=False) for n in (1, 3, len(df))]


def arrow_backed(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as the reader gives it: pyarrow-backed dtypes (``pd.ArrowDtype``)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def write_csv(path: Path, lines: list[str], newline: str = "\n") -> Path:
    """A tracks CSV of the header and ``lines``."""
    path.write_text(newline.join([HEADER, *lines]) + newline)
    return path


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12,000 generated rows: 12 genres, shared tracks, duplicates, quoted names."""
    return generate(tmp_path_factory.mktemp("data") / "small.csv", rows=12_000, seed=7)


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240,000 rows (two cycles of the 114 genres: far-away duplicates exist, empty names)."""
    return generate(tmp_path_factory.mktemp("data") / "big.csv", rows=240_000, seed=3)


@pytest.fixture(scope="session")
def large_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.5 million rows (about 250 MB): a run long enough to interrupt or disturb."""
    return generate(tmp_path_factory.mktemp("data") / "large.csv", rows=1_500_000, seed=1)


def popen_run(*args: str | Path) -> subprocess.Popen:
    """Start `python -m pipeline.run ARGS` (dashboard on a free loopback port)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "pipeline.run", *map(str, args)]
    cmd += ["--dashboard-address", "127.0.0.1:0"]
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach the run even when this test itself runs with SIGINT ignored
        # (a background job of a shell): Python only turns SIGINT into KeyboardInterrupt if
        # it is not ignored at start.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_until_writing(proc: subprocess.Popen, out: Path) -> None:
    """Return once the run's block tasks are writing into their staging directory."""
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.staging-*/_attempt-0/scratch/*.arrow")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)


MEANS = (  # the summary's means, in its order: the oracle's own list
    "duration_ms",
    "danceability",
    "energy",
    "loudness",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
)


def summary_reference(df: pd.DataFrame, by: str = "track_genre") -> pd.DataFrame:
    """The summary of ``genre_summary.csv`` by ``by``, computed the obvious way with plain
    pandas, and Python's own median (the mean of the two middle values)."""
    g = df.groupby(by)

    def median(column: str) -> pd.Series:
        return g[column].agg(lambda values: statistics.median(values.tolist())).astype(float)

    return pd.DataFrame(
        {
            "tracks": g.size(),
            "unique_artists": g["artists"].nunique(),
            "explicit_share": g["explicit"].mean(),
            "popularity_mean": g["popularity"].mean(),
            "popularity_min": g["popularity"].min(),
            "popularity_max": g["popularity"].max(),
            **{f"{c}_mean": g[c].mean() for c in MEANS},
            "popularity_median": median("popularity"),
            "duration_ms_median": median("duration_ms"),
            "tempo_median": median("tempo"),
        }
    ).reset_index()


def reference(path: Path | str, top: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The genre summary and top tracks computed the obvious way with plain pandas."""
    df = pd.read_csv(path, index_col=0)
    df = df.drop_duplicates(["track_id", "track_genre"], keep="first")
    summary = summary_reference(df)
    ordered = df.sort_values(
        ["track_genre", "popularity", "track_id"], ascending=[True, False, True]
    )
    best = ordered.groupby("track_genre").head(top).copy()
    best["rank"] = best.groupby("track_genre").cumcount() + 1
    cols = ["track_genre", "rank", "track_id", "track_name", "artists", "popularity"]
    return summary, best[cols].reset_index(drop=True)


def assert_frames_match(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns, rows and integers; floats equal to 1e-12 relative to the column's largest
    value (partitioned sums add, and subtract removed duplicates, in another order)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        a, b = got[col].reset_index(drop=True), want[col].reset_index(drop=True)
        if pd.api.types.is_float_dtype(b) and not pd.api.types.is_integer_dtype(a):
            scale = np.nanmax(np.abs(b.to_numpy(float)), initial=0.0)
            np.testing.assert_allclose(
                a.to_numpy(float), b.to_numpy(float), rtol=1e-12, atol=1e-12 * scale
            )
        else:
            assert (
                a.astype(str).replace({"nan": ""}).tolist()
                == b.astype(str).replace({"nan": ""}).tolist()
            ), col
