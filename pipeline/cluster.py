"""The Dask cluster of a run: a local cluster bound to 127.0.0.1, or an existing scheduler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from pipeline.config import Config


@contextmanager
def connect(cfg: Config) -> Iterator[Client]:
    """Yield a client; close it (and the cluster, if we started it) on every path.

    An existing cluster (``cfg.scheduler``) is never shut down: only our client is closed.
    """
    if cfg.scheduler:
        with Client(cfg.scheduler, timeout="10s") as client:
            yield client
        return
    # Threads in one process talk in-process (no port at all); processes talk TCP on loopback.
    network = {"host": "127.0.0.1"} if cfg.processes else {}
    with (
        LocalCluster(
            n_workers=cfg.workers,
            threads_per_worker=cfg.threads_per_worker,
            processes=cfg.processes,
            memory_limit=cfg.memory_limit,
            dashboard_address=cfg.dashboard_address,
            worker_dashboard_address="127.0.0.1:0",  # Dask's default is every interface
            silence_logs=logging.ERROR,
            **network,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def describe(client: Client) -> str:
    """``2 workers x 1 threads`` for a client's cluster."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    threads = sorted({w["nthreads"] for w in workers})
    return f"{len(workers)} workers x {'/'.join(map(str, threads))} threads"


def dashboard_link(client: Client, cfg: Config) -> str:
    """The dashboard URL to print; for a local cluster, on the host it really listens on
    (Dask's own link shows the machine's address, which a loopback dashboard does not serve)."""
    if cfg.scheduler:
        return client.dashboard_link
    port = client.scheduler_info()["services"].get("dashboard")
    if port is None:
        return "none (dashboard disabled)"
    host = cfg.dashboard_address.rpartition(":")[0] or "127.0.0.1"
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}/status"
