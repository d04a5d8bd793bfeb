"""Lost workers: SIGKILL one worker process of a ``--processes`` run at moments chosen from the
run's progress (the cluster starting, blocks read, genres written); every run must exit 0 with
the outputs of an undisturbed run, and say so in one warning line."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import CSVS, popen_run

from pipeline.generate import generate
from pipeline.run import main

BLOCK = 1 << 20
CLUSTER = ("--processes", "--workers", "2", "--threads-per-worker", "1", "--blocksize", "1MiB")
WARNINGS = {  # the one line on stderr
    "run": "warning: 1 worker(s) left or were restarted during the run (killed, or out of memory: "
    "see --memory-limit); Dask ran their tasks again, the outputs are complete",
    "cluster start": "warning: a worker process died while the cluster started; starting again",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300,000 rows (about 50 MB, some 48 blocks of 1 MiB; far-away duplicates exist)."""
    return generate(tmp_path_factory.mktemp("faults") / "tracks.csv", rows=300_000, seed=5)


@pytest.fixture(scope="module")
def calm(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calm") / "out"
    assert main([str(source), "-o", str(out), "-q", "--dashboard-address", "127.0.0.1:0"]) == 0
    return out


class Progress:
    """What a run's tasks have written so far into its staging directory."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def _attempt(self) -> Path | None:
        found = list(self.out.parent.glob(f".{self.out.name}.staging-*/_attempt-0"))
        return found[0] if found else None

    def blocks(self) -> int:
        attempt = self._attempt()
        return len(list(attempt.glob("scratch/*.arrow"))) if attempt else 0

    def written(self) -> int:
        attempt = self._attempt()
        return len(list(attempt.glob("tracks/*/*.parquet"))) if attempt else 0


def moments(blocks: int, genres: int) -> dict[str, Callable[[Progress], bool]]:
    """When to kill: as soon as a worker process exists (the cluster is starting), early and
    late in the block phase, as the genres are gathered (every block written, no genre yet),
    and while the genres' Parquet files are written."""
    return {
        "cluster start": lambda p: True,
        "first block": lambda p: p.blocks() >= 1,
        "half the blocks": lambda p: p.blocks() >= blocks // 2,
        "last blocks": lambda p: p.blocks() >= blocks - 2,
        "gathering genres": lambda p: p.blocks() >= blocks and p.written() == 0,
        "first genres written": lambda p: p.written() >= 1,
        "most genres written": lambda p: p.written() >= genres * 3 // 4,
    }


def kill_a_worker_when(proc, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not (ready() and (workers := worker_processes(proc))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the moment never came"
        time.sleep(0.002)
    workers[0].kill()


def worker_processes(proc) -> list[psutil.Process]:
    children = psutil.Process(proc.pid).children()
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def tracks(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "tracks").astype({"track_genre": "str"})
    return df.sort_values(["track_genre", "track_id"], ignore_index=True)


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(moments(1, 1)))
def test_worker_killed_at_any_moment_same_outputs(
    source: Path, calm: Path, tmp_path: Path, moment: str
) -> None:
    blocks = math.ceil(source.stat().st_size / BLOCK)
    genres = len(pd.read_csv(calm / "genre_summary.csv"))
    out = tmp_path / "out"
    proc = popen_run(source, "-o", out, "-q", *CLUSTER)
    kill_a_worker_when(proc, lambda: moments(blocks, genres)[moment](Progress(out)))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    for name in CSVS:
        assert (out / name).read_bytes() == (calm / name).read_bytes(), name
    pd.testing.assert_frame_equal(tracks(out), tracks(calm))
    assert err.splitlines() == [WARNINGS["cluster start" if moment == "cluster start" else "run"]]
    assert not list(tmp_path.glob(".out.staging-*")) and not list(out.rglob(".*.tmp"))
