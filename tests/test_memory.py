"""Memory: an input three times the workers' memory, and workers stuck at their limit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dask
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_frames_match, popen_run

from pipeline import execute
from pipeline.cluster import tightest_worker
from pipeline.config import Config, InputError, RunError, largest_block, least_memory
from pipeline.generate import generate
from pipeline.run import main

LIMIT = 600 * 2**20  # one worker process with 2 threads; Python and the libraries take ~300 MB
ROWS = 11_500_000  # about 1.9 GB: over three times LIMIT


def finished(*args: str | Path) -> None:
    proc = popen_run(*args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(out / "genre_summary.csv"), pd.read_csv(out / "top_tracks.csv")


def genre_rows(out: Path) -> dict[str, pa.Table]:
    """Every genre's Parquet rows, in file order (the order both runs write them in)."""
    return {
        genre.name: pa.concat_tables(pq.read_table(f) for f in sorted(genre.glob("*.parquet")))
        for genre in sorted((out / "tracks").iterdir())
    }


@pytest.mark.slow
def test_input_three_times_worker_memory_gives_the_same_outputs(tmp_path: Path) -> None:
    src = generate(tmp_path / "tracks.csv", rows=ROWS, seed=11)
    assert src.stat().st_size >= 3 * LIMIT
    finished(src, "-o", tmp_path / "free", "-q")
    finished(
        src,
        "-o",
        tmp_path / "tight",
        "-q",
        "--processes",
        "--workers",
        "1",
        "--threads-per-worker",
        "2",
        "--memory-limit",
        f"{LIMIT >> 20}MiB",
    )  # no --blocksize: partitions sized from the limit
    for got, want in zip(outputs(tmp_path / "tight"), outputs(tmp_path / "free"), strict=True):
        assert_frames_match(got, want)
    tracks, want_tracks = genre_rows(tmp_path / "tight"), genre_rows(tmp_path / "free")
    assert list(tracks) == list(want_tracks) and len(tracks) == 114
    assert all(tracks[genre].equals(rows) for genre, rows in want_tracks.items())
    manifest = json.loads((tmp_path / "tight" / "manifest.json").read_text())
    free = json.loads((tmp_path / "free" / "manifest.json").read_text())
    # blocks of 11.25 MiB, from the limit (two threads: 48 MiB blocks when memory is free)
    block = largest_block(LIMIT, 2)
    assert manifest["partitions"] == -(-src.stat().st_size // block) > free["partitions"]
    assert manifest["workers_lost"] == []  # no worker restarted, none killed
    (worker,) = manifest["workers"].values()
    assert worker["memory_limit_mb"] == round(LIMIT / 1e6, 1)
    assert worker["peak_rss_mb"] < worker["memory_limit_mb"]
    # memory Arrow's allocator kept made Dask spill 0.9-2.9 GB here, and sometimes pause the
    # worker for good; given back after each heavy task, 0-21 MB (7 runs)
    assert worker["spilled_mb"] < src.stat().st_size / 4e6


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--workers", "2", "--threads-per-worker", "1", "--memory-limit", "300MB"],
            "error: memory limit 286 MiB per worker is too small: a worker with 1 thread(s) needs "
            "at least 385 MiB (about 300 MiB for Python and the libraries plus 8 x a 1 MiB block "
            "per thread, below Dask's pause at 80%); give workers more memory (--memory-limit) or "
            "fewer threads (--threads-per-worker)\n",
        ),
        (
            ["--threads-per-worker", "2", "--memory-limit", "600MiB", "--blocksize", "48MiB"],
            "error: --blocksize 48 MiB is too large for workers of 600 MiB with 2 thread(s): a "
            "worker needs about 300 MiB plus 8 x the block per thread, below Dask's pause at 80%; "
            "use --blocksize 11MiB or less (or leave it out), or give workers more memory "
            "(--memory-limit)\n",
        ),
    ],
)
def test_memory_too_small_for_any_block_is_refused_before_work(
    small_csv: Path, tmp_path: Path, capsys, options: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            str(small_csv),
            "-o",
            str(out),
            "--processes",
            "--dashboard-address",
            "127.0.0.1:0",
            *options,
        ]
    )
    assert (code, capsys.readouterr().err) == (2, message)
    assert not out.exists()


class Workers:
    """A stand-in client of an existing cluster: workers with their limits and threads."""

    def __init__(self, *workers: tuple[int, int]) -> None:
        self.workers = workers

    def scheduler_info(self, n_workers: int) -> dict:
        return {
            "workers": {
                f"w{i}": {"memory_limit": limit, "nthreads": threads}
                for i, (limit, threads) in enumerate(self.workers)
            }
        }


def test_blocks_fit_the_tightest_worker_of_an_existing_cluster() -> None:
    gib = 2**30
    workers = Workers((4 * gib, 2), (1 * gib, 4), (0, 8))  # 0: a worker without a limit
    assert tightest_worker(workers) == (1 * gib, 4)  # (0.8 GiB - 300 MiB) / 32: 16.2 MiB
    assert Config().blocksize_for(10 * gib, 14, (1 * gib, 4)) == largest_block(gib, 4)
    assert largest_block(gib, 4) // 2**20 == 16
    assert Config().blocksize_for(10 * gib, 14, None) == 48 * 2**20
    assert tightest_worker(Workers((0, 2))) is None
    assert least_memory(2) == int((300 * 2**20 + 16 * 2**20) / 0.8) + 1


class Paused:
    """A stand-in client whose workers report a status."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = statuses

    def scheduler_info(self, n_workers: int) -> dict:
        workers = {
            f"w{i}": {"status": s, "memory_limit": LIMIT} for i, s in enumerate(self.statuses)
        }
        return {"workers": workers}


def test_workers_paused_too_long_fail_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "STALLED_TOO_LONG", 0.05)
    assert execute._check_stalled(Paused("running", "paused"), None) is None
    stall = execute._check_stalled(Paused("paused", "paused"), None)
    assert stall is not None
    assert execute._check_stalled(Paused("paused", "running"), stall) is None  # one came back
    time.sleep(0.1)
    with pytest.raises(InputError) as err:
        execute._check_stalled(Paused("paused", "paused"), stall)
    assert str(err.value) == (
        "every worker has been paused at its memory limit (600 MiB) for 0 s; give workers "
        "more memory (--memory-limit) or read smaller partitions (--blocksize)"
    )


def test_a_cluster_without_workers_too_long_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its workers gone (an existing cluster's: a local cluster's nannies start theirs again)."""
    monkeypatch.setattr(execute, "STALLED_TOO_LONG", 0.05)
    stall = execute._check_stalled(Paused(), None)
    assert stall == execute.Stall("gone", stall.since)
    assert execute._check_stalled(Paused("paused"), stall).workers == "paused"  # one joined
    assert execute._check_stalled(Paused("running"), stall) is None
    time.sleep(0.1)
    with pytest.raises(RunError) as err:
        execute._check_stalled(Paused(), stall)
    assert str(err.value) == (
        "every worker has left the cluster and none has joined for 0 s; nothing was published: "
        "start workers (dask worker SCHEDULER) and run again"
    )


def test_the_paused_check_runs_while_a_progress_bar_is_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The bar (shown on a terminal) waits for the whole compute: it runs beside the check."""
    from distributed import Client

    def paused(client, stall):
        raise InputError("paused")

    with Client(processes=False, n_workers=1, dashboard_address=None) as client:
        assert execute._compute(client, {"x": dask.delayed(sum)([1, 2])}, True) == {"x": 3}
        assert "100% Completed" in capsys.readouterr().out
        monkeypatch.setattr(execute, "_check_stalled", paused)
        with pytest.raises(InputError, match="paused"):  # checked after 1 s, not at the end
            execute._compute(client, {"x": dask.delayed(time.sleep)(3)}, True)
