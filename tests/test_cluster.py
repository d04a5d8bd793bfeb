"""The cluster context manager: loopback only, closed on every path, threads or processes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pytest

from pipeline.cluster import connect, describe
from pipeline.config import Config
from pipeline.run import main


def listening(pids: set[int]) -> list[str]:
    """Addresses on which the given processes listen for TCP connections."""
    return [
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def family() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.children(recursive=True))}


@pytest.mark.parametrize("processes", [False, True])
def test_cluster_listens_on_loopback_only(processes: bool) -> None:
    cfg = Config(
        processes=processes,
        workers=2 if processes else 1,
        threads_per_worker=1,
        dashboard_address="127.0.0.1:0",
    )
    with connect(cfg) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        addresses = listening(family())
        assert addresses and set(addresses) == {"127.0.0.1"}
        assert describe(client) == f"{2 if processes else 1} workers x 1 threads"
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        # one block per thread at a time (memory: README, Defaults)
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION) == 1
    assert listening(family()) == []  # everything closed


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def built(node) -> bool:
    """Whether a scheduler's or worker's dashboard pages (a Bokeh application) are built."""
    return any("Bokeh" in type(app).__name__ for app in node.http_application.applications)


@pytest.mark.parametrize("processes", [False, True])
def test_dashboard_builds_its_pages_on_the_first_visit(processes: bool) -> None:
    cfg = Config(
        processes=processes, workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0"
    )
    with connect(cfg) as client:
        scheduler = client.cluster.scheduler
        base = client.dashboard_link.removesuffix("/status")
        assert client.submit(sum, [1, 2]).result() == 3
        assert status(base + "/health") == 200 and not built(scheduler)  # Dask's own routes
        assert status(base + "/status") == 200 and built(scheduler)  # built, then redirected
        assert status(base + "/individual-task-stream") == 200
        assert status(base + "/no-such-page") == 404
        worker = next(iter(client.scheduler_info()["workers"].values()))
        page = f"http://127.0.0.1:{worker['services']['dashboard']}/status"
        if not processes:  # a worker of ours (threads): the same, its own pages
            (ours,) = client.cluster.workers.values()
            assert not built(ours)
            assert status(page) == 200 and built(ours)
        assert status(page) == 200


def test_cluster_closed_when_the_body_raises() -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        connect(Config(dashboard_address="127.0.0.1:0")) as client,
    ):
        cluster = client.cluster
        raise RuntimeError("boom")
    assert cluster.status.name == "closed" and client.status == "closed"


@pytest.mark.slow
def test_run_with_worker_processes_equals_threads(small_csv: Path, tmp_path: Path) -> None:
    common = ["--dashboard-address", "127.0.0.1:0", "--blocksize", "256KiB"]
    assert main([str(small_csv), "-o", str(tmp_path / "threads"), *common]) == 0
    assert main([str(small_csv), "-o", str(tmp_path / "procs"), "--processes", *common]) == 0
    for name in ("genre_summary.csv", "top_tracks.csv", "rejected_rows.csv"):
        assert (tmp_path / "threads" / name).read_bytes() == (
            tmp_path / "procs" / name
        ).read_bytes()
    manifest = json.loads((tmp_path / "procs" / "manifest.json").read_text())
    assert manifest["cluster"].startswith(f"{psutil.cpu_count()} workers x 1 threads")
    a = pd.read_parquet(tmp_path / "threads" / "tracks").sort_values(["track_genre", "track_id"])
    b = pd.read_parquet(tmp_path / "procs" / "tracks").sort_values(["track_genre", "track_id"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
