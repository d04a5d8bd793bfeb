"""The run's graph (``job.build``): duplicates across blocks, accounting, one parse per block,
the Dask DataFrame operations it is made of."""

from __future__ import annotations

from pathlib import Path

import dask
import pandas as pd
from conftest import assert_frames_match, reference, track_row, write_csv

from pipeline import job
from pipeline.blocks import plan_input
from pipeline.config import Config
from pipeline.outputs import OUTPUTS, SUMMARY_CSV, TOP_CSV


def run_graph(path: Path, work: Path, blocksize: int, top: int = 3) -> job.JobResult:
    plan = plan_input([str(path)], Config(blocksize=blocksize), 1)
    built = job.build(plan, top, str(work))
    return job.collect(built, list(dask.compute(*built.collections(), scheduler="sync")))


def test_job_far_duplicates_removed_everywhere(tmp_path: Path) -> None:
    """Twins 60 lines apart with 1 KiB blocks: later copies leave the Parquet and the summary."""
    lines = [
        track_row(i, f"t{i % 60}", ["jazz", "rock"][i // 60 % 2], (i * 37) % 101)
        for i in range(240)
    ]
    lines[200] = track_row(200, "t5", "rock", 100, artists="Only, Here")  # other values
    src = write_csv(tmp_path / "far.csv", lines)
    result = run_graph(src, tmp_path / "work", blocksize=1024)
    want_summary, want_top = reference(src, top=3)
    assert_frames_match(result.frames[SUMMARY_CSV], want_summary)
    assert_frames_match(result.frames[TOP_CSV], want_top)
    tracks = pd.read_parquet(tmp_path / "work" / "tracks")
    assert len(tracks) == result.kept == want_summary["tracks"].sum() == 120
    assert result.duplicates == 120 and result.rows == 240
    assert "Only, Here" not in set(tracks["artists"])


def test_job_writes_one_parquet_file_per_genre(small_csv: Path, tmp_path: Path) -> None:
    result = run_graph(small_csv, tmp_path / "work", blocksize=256 * 1024)
    files = sorted((tmp_path / "work" / "tracks").rglob("*.parquet"))
    summary = result.frames[SUMMARY_CSV]
    assert len(files) == len(summary) == result.counts["genres"] == 12
    assert {f.parent.name for f in files} == {f"track_genre={g}" for g in summary["track_genre"]}


def test_job_graph_is_dataframe_operations_over_from_map(small_csv: Path, tmp_path: Path) -> None:
    """The reader's from_map layer feeds every output; nothing is built by hand."""
    plan = plan_input([str(small_csv)], Config(blocksize=256 * 1024), 1)
    built = job.build(plan, 3, str(tmp_path / "work"))
    assert list(built.outputs) == [o.name for o in OUTPUTS]  # one frame per declared output
    expr = dask.base.collections_to_expr(built.collections()).optimize()
    graph = dict(expr.__dask_graph__())
    names = [k[0] if isinstance(k, tuple) else k for k in graph]
    assert sum(1 for n in names if n.startswith("read-block")) == len(plan.blocks)
