"""The Dask cluster of a run: a local cluster bound to 127.0.0.1, or an existing scheduler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import dask
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
    # Dask's link names the machine's address, which a dashboard on 127.0.0.1 does not serve.
    link = dask.config.get("distributed.dashboard.link")
    if link == "{scheme}://{host}:{port}/status":
        link = "http://127.0.0.1:{port}/status"
    with (
        dask.config.set({"distributed.dashboard.link": link}),
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
