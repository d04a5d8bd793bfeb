"""Rows gathered by genre through scratch files: exact, and safe for Dask to run twice."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
import pytest

from pipeline import shuffle
from pipeline.blocks import plan_input
from pipeline.config import Config
from pipeline.publish import write_tracks
from pipeline.read import read_tracks
from pipeline.schema import GENRE, KEY
from pipeline.transforms import drop_duplicate_tracks


@pytest.fixture(scope="module")
def clean(big_csv: Path) -> dd.DataFrame:
    """240,000 rows in 1 MiB blocks: twins in different blocks, far apart."""
    return read_tracks(plan_input([str(big_csv)], Config(blocksize=1 << 20), 1)).clean


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("tasks", [1, 7, 200])
def test_by_genre_equals_dropping_duplicates_in_file_order(
    clean: dd.DataFrame, tmp_path: Path, tasks: int
) -> None:
    unique, pieces = shuffle.by_genre(clean, str(tmp_path / "scratch"), tasks)
    got, pieces = dask.compute(unique, pieces, scheduler="threads")
    want = drop_duplicate_tracks(clean.compute())
    order = [GENRE, "track_id"]
    pd.testing.assert_frame_equal(
        got.sort_values(order, ignore_index=True), want.sort_values(order, ignore_index=True)
    )
    assert pieces["rows"].sum() == len(clean)
    assert not got.duplicated(list(KEY)).any()


def test_by_genre_keeps_the_first_of_twins_in_a_block(clean: dd.DataFrame, tmp_path: Path) -> None:
    first = clean.partitions[0].compute().head(50).reset_index(drop=True)
    twins = first.head(3).assign(popularity=first["popularity"].head(3) + 1)  # later, other values
    block = dd.from_pandas(pd.concat([first, twins], ignore_index=True), npartitions=1)
    unique, _ = shuffle.by_genre(block, str(tmp_path / "scratch"), 2)
    got = unique.compute(scheduler="threads")
    order = [GENRE, "track_id"]
    pd.testing.assert_frame_equal(
        got.sort_values(order, ignore_index=True),
        drop_duplicate_tracks(first).sort_values(order, ignore_index=True),
    )


def test_by_genre_each_genre_whole_in_one_partition(clean: dd.DataFrame, tmp_path: Path) -> None:
    unique, _ = shuffle.by_genre(clean, str(tmp_path / "scratch"), 16)
    parts = [set(p[GENRE]) for p in dask.compute(*unique.to_delayed(), scheduler="threads")]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 114
    sizes = [len(p) for p in dask.compute(*unique.to_delayed(), scheduler="threads")]
    assert max(sizes) < 2 * sum(sizes) / 16  # shared out by size, largest first


def test_share_out_is_deterministic_largest_first() -> None:
    pieces = pd.DataFrame(
        {GENRE: ["a", "b", "c", "a"], "block": [0, 0, 1, 1], "rows": [5, 4, 3, 2]}
    )
    routed = shuffle.share_out(pieces, 2)
    assert dict(zip(routed[GENRE], routed["bucket"], strict=True)) == {"a": 0, "b": 1, "c": 1}
    pd.testing.assert_frame_equal(routed, shuffle.share_out(pieces.iloc[::-1], 2))


def test_tasks_run_twice_write_the_same_bytes(clean: dd.DataFrame, tmp_path: Path) -> None:
    """What Dask does after losing a worker: run a task again. Every file it writes is named by
    what it holds, so the second run leaves the same files, byte for byte."""
    block = clean.get_partition(3).compute()
    info = {"number": 3}
    first = shuffle.scatter(block, str(tmp_path / "scratch"), partition_info=info)
    before = files_of(tmp_path / "scratch")
    again = shuffle.scatter(block, str(tmp_path / "scratch"), partition_info=info)
    assert files_of(tmp_path / "scratch") == before
    pd.testing.assert_frame_equal(first, again)

    rows = shuffle.gather(first, tuple(clean.columns))
    pd.testing.assert_frame_equal(rows, shuffle.gather(first, tuple(clean.columns)))
    write_tracks(rows, str(tmp_path / "tracks"), partition_info={"number": 0})
    written = files_of(tmp_path / "tracks")
    write_tracks(rows, str(tmp_path / "tracks"), partition_info={"number": 0})
    assert files_of(tmp_path / "tracks") == written
    assert not list(tmp_path.rglob(".*.tmp"))  # replaced whole: no temporary file left
