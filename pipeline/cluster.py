"""The Dask cluster of a run: a local cluster bound to 127.0.0.1, or an existing scheduler."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import posixpath
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, Worker
from distributed.comm import connect as comm_connect
from distributed.comm import get_address_host, parse_address
from distributed.security import Security
from distributed.versions import VersionMismatchWarning, scheduler_relevant_packages
from tornado import web

from pipeline.blocks import file_size
from pipeline.config import Config, InputError, RunError, largest_block
from pipeline.memory import peak_rss_mb
from pipeline.storage import StorageOptions, filesystem, remove_tree

log = logging.getLogger("pipeline")
PACKAGE = "genre-pipeline"  # tasks call its functions: the workers need the same version


@contextmanager
def connect(cfg: Config) -> Iterator[Client]:
    """Yield a client; close it (and the cluster, if we started it) on every path.

    An existing cluster (``cfg.scheduler``) is never shut down: only our client is closed.
    """
    if cfg.scheduler:
        with existing_client(cfg) as client:
            if not client.nthreads():  # a batch or cloud cluster whose workers are starting
                log.warning("waiting for the first worker to join %s (Ctrl-C stops)", cfg.scheduler)
                client.wait_for_workers(1)
            check_versions(client)
            yield client
        return
    # Dask's link names the machine's address, which a dashboard on 127.0.0.1 does not serve.
    link = dask.config.get("distributed.dashboard.link")
    if link == "{scheme}://{host}:{port}/status":
        link = "http://127.0.0.1:{port}/status"
    with (
        dask.config.set({"distributed.dashboard.link": link}),
        local_cluster(cfg) as cluster,
        Client(cluster) as client,
    ):
        yield client


STARTS = 3  # attempts to start a local cluster whose worker processes die while starting


def local_cluster(cfg: Config) -> LocalCluster:
    """A local cluster bound to 127.0.0.1; started again when a worker process dies while it
    starts (killed, or out of memory), which Dask reports as "Nanny failed to start".

    Its dashboard listens from the start and builds its pages on the first visit
    (:func:`pages_on_first_visit`): Dask would import Bokeh for them before the first task,
    holding Python's lock, which a run nobody watches does not need (docs/monitoring.md).
    """
    attempt = 1
    while True:
        try:
            # one block per thread at a time: Dask would hand a worker a third block to parse
            # before the first one is sorted, and hold all three (docs/design.md, Defaults)
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
                cluster = LocalCluster(
                    n_workers=cfg.workers,
                    threads_per_worker=cfg.threads_per_worker,
                    processes=cfg.processes,
                    memory_limit=cfg.memory_limit,
                    dashboard_address=cfg.dashboard_address,
                    worker_dashboard_address="127.0.0.1:0",  # Dask's default is every interface
                    # a lost worker is reported by the run in one line; Dask's logs with -v only
                    silence_logs=logging.WARNING if cfg.verbose else logging.CRITICAL,
                    # threads talk in-process (no port at all); processes TCP on loopback
                    **({"host": "127.0.0.1"} if cfg.processes else {}),
                    scheduler_kwargs={"dashboard": False},  # pages on the first visit
                    # threads: the same for the worker, which keeps its loopback address (without
                    # one its HTTP server would listen on every interface); processes import Bokeh
                    # in their own processes
                    **({} if cfg.processes else {"worker_class": PagelessWorker}),
                )
        except RuntimeError as err:
            if "failed to start" not in str(err):
                raise
            if attempt == STARTS:
                raise RunError(
                    f"the local cluster's worker processes died while it started, {STARTS} times "
                    "(killed, or out of memory: see --memory-limit)"
                ) from err
            attempt += 1
            log.warning("warning: a worker process died while the cluster started; starting again")
            continue
        pages_on_first_visit(cluster.scheduler, _scheduler_pages)
        for worker in cluster.workers.values():
            if isinstance(worker, Worker):  # a worker in a thread of ours
                pages_on_first_visit(worker, _worker_pages)
        return cluster


class PagelessWorker(Worker):
    """Dask's worker without its dashboard pages until they are first visited (LocalCluster
    asks for them whenever it gives workers an address)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "dashboard": False})


class _FirstVisit(web.RequestHandler):
    """Any page not served yet: build the dashboard's pages, then send the browser back."""

    def initialize(self, node: Any, lazy: web.Application, build: Callable[[Any], None]) -> None:
        self.node, self.lazy, self.build = node, lazy, build

    def get(self, *args: Any) -> None:
        apps = self.node.http_application.applications
        if self.lazy in apps:
            apps.remove(self.lazy)
            self.build(self.node)  # on the node's event loop, as Dask builds them
        self.redirect(self.request.uri)


def pages_on_first_visit(node: Any, build: Callable[[Any], None]) -> None:
    """Have a scheduler's or worker's HTTP server build its dashboard pages (``build``) when a
    page it does not serve is first asked for (Dask's own routes, /health and /metrics, are
    served at once)."""
    if node.http_server is None:
        return
    lazy = web.Application()
    lazy.add_handlers(".*", [(r"/.*", _FirstVisit, {"node": node, "lazy": lazy, "build": build})])
    node.http_application.add_application(lazy)


def _scheduler_pages(scheduler: Any) -> None:
    """What ``Scheduler.__init__`` does with its dashboard on (its default prefix)."""
    from distributed.dashboard.scheduler import connect

    connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="/")


def _worker_pages(worker: Any) -> None:
    """What ``Worker.start_unsafe`` does with its dashboard on."""
    from distributed.dashboard.worker import connect

    connect(worker.http_application, worker.http_server, worker, prefix=worker._http_prefix)


def scheduler_address(address: str | None, scheduler_file: str | None) -> str | None:
    """The existing scheduler to run on: ``--scheduler``, else the address in
    ``--scheduler-file``, else Dask's ``scheduler-address`` setting (which Dask reads from
    DASK_SCHEDULER_ADDRESS); None for a local cluster."""
    if address:
        return address
    if scheduler_file:
        try:
            return str(json.loads(Path(scheduler_file).read_text())["address"])
        except FileNotFoundError:
            raise InputError(
                f"--scheduler-file {scheduler_file}: no such file; it is written by "
                f"`dask scheduler --scheduler-file {scheduler_file}`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(
                f"--scheduler-file {scheduler_file}: not a Dask scheduler file "
                f"({type(err).__name__}: {err})"
            ) from None
    return dask.config.get("scheduler-address", None) or None


def security(cfg: Config) -> Security:
    """TLS files given as options; the others (all, when none is given) from Dask's config."""
    files = {"tls_ca_file": cfg.tls_ca_file, "tls_client_cert": cfg.tls_cert}
    sec = Security(**{k: v for k, v in {**files, "tls_client_key": cfg.tls_key}.items() if v})
    tls = sec.get_tls_config_for_role("client")
    if str(cfg.scheduler).startswith("tls://") and not (tls["ca_file"] and tls["cert"]):
        raise InputError(
            f"{cfg.scheduler}: TLS needs a CA file and a client certificate: --tls-ca-file and "
            "--tls-cert (and --tls-key), or distributed.comm.tls.ca-file and "
            "distributed.comm.tls.client.cert in Dask's configuration"
        )
    return sec


@contextmanager
def existing_client(cfg: Config) -> Iterator[Client]:
    """A client of ``cfg.scheduler``, or one clear error within ``cfg.connect_timeout``."""
    sec, where = security(cfg), f"the Dask scheduler at {cfg.scheduler}"
    hint = "(--scheduler, --scheduler-file or DASK_SCHEDULER_ADDRESS)"
    try:
        handshake(cfg.scheduler or "", cfg.connect_timeout, sec)
        with warnings.catch_warnings():
            # Dask warns with a table; check_versions says it in one line
            warnings.simplefilter("ignore", VersionMismatchWarning)
            client = Client(cfg.scheduler, timeout=cfg.connect_timeout, security=sec)
    except TimeoutError:
        raise InputError(
            f"{where} did not answer within {cfg.connect_timeout:g} s; check that it runs and "
            f"the address {hint}, or allow longer with --connect-timeout"
        ) from None
    except OSError as err:  # reset, TLS handshake failed
        reason = str(err) or f"{type(err).__name__}: {err.__cause__}"
        raise InputError(
            f"cannot connect to {where}: {reason}; check the address {hint} and the TLS settings"
        ) from err
    with client:
        yield client


def handshake(address: str, timeout: float, sec: Security) -> None:
    """Open and close one connection (Dask's handshake included) within ``timeout`` seconds,
    else TimeoutError: Dask's Client waits forever on a port that accepts but never answers
    (an HTTP port, say)."""

    async def hello() -> None:
        # Dask's own limit is longer so that a refused port also ends in our TimeoutError
        args = sec.get_connection_args("client")
        comm = await comm_connect(address, timeout=2 * timeout, **args)
        await comm.close()

    with ThreadPoolExecutor(1) as pool:  # an event loop of its own, also under Jupyter's
        pool.submit(asyncio.run, asyncio.wait_for(hello(), timeout)).result()


def check_versions(client: Client) -> None:
    """Refuse a cluster whose package versions differ from ours, in one line: Dask only warns
    (with a table), and tasks may then fail far into the run."""
    found = client.get_versions(packages=[PACKAGE])
    if mismatches := version_mismatches(found):
        raise InputError(
            f"the cluster at {client.scheduler.address} has other package versions than this "
            f"machine: {'; '.join(mismatches)}; install the same versions on every node "
            f"(and pip install {PACKAGE} there)"
        )


def version_mismatches(found: dict) -> list[str]:
    """``dask: client 2026.8.0, scheduler 2026.1.0, workers 2026.1.0`` for each package whose
    versions differ, by Dask's own rule (the scheduler counts only for the packages it uses)."""
    mismatches = []
    for package, ours in found["client"]["packages"].items():
        where = {"client": {ours}}
        if package in scheduler_relevant_packages:
            where["scheduler"] = {found["scheduler"]["packages"].get(package)}
        where["workers"] = {w["packages"].get(package) for w in found["workers"].values()}
        if len(set.union(*where.values())) > 1:
            seen = ", ".join(
                f"{k} {'/'.join(sorted(str(v or 'missing') for v in vs))}"
                for k, vs in where.items()
            )
            mismatches.append(f"{package}: {seen}")
    return mismatches


def unencrypted_remote(address: str) -> bool:
    """Whether ``address`` reaches another machine over plain TCP (or WebSocket): Dask then
    neither authenticates nor encrypts."""
    scheme, _ = parse_address(address)
    if scheme not in ("tcp", "ws"):
        return False
    try:
        host = get_address_host(address)
    except ValueError:  # no port: connecting fails with its own message
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return host != "localhost"


def check_shared_storage(
    client: Client, stage: str, inputs: list[str], storage_options: StorageOptions
) -> None:
    """Before the first task on a cluster we did not start: every worker must see the input
    files as this machine does (one in each directory, by its size) and write where the run
    writes (its staging directory, beside the output) so that this machine reads what it
    wrote; otherwise one line, exit 2. A few bytes per worker, removed again."""
    sizes = {path: file_size(path, storage_options) for path in _one_per_directory(inputs)}
    probes, token = f"{stage}/_probe", uuid.uuid4().hex
    answers = client.run(_probe, probes, sizes, dict(storage_options), token, on_error="return")
    problems = [_read_back(a, answer, token, storage_options) for a, answer in answers.items()]
    client.run(remove_tree, probes, dict(storage_options), on_error="ignore")
    if problem := next((p for p in sorted(problems) if p), None):
        raise InputError(
            f"the workers of the cluster at {client.scheduler.address} do not share this "
            f"machine's storage: {problem}; put the input and --output on storage that every "
            "worker and this machine reach under the same name (s3://..., a shared filesystem)"
        )


def _one_per_directory(paths: list[str]) -> list[str]:
    first: dict[str, str] = {}
    for path in paths:
        first.setdefault(posixpath.dirname(path), path)
    return list(first.values())


def _mark(token: str, address: str) -> bytes:
    """What a worker writes in its probe file, and this machine must read back."""
    return f"{token} {address}".encode()


@dataclass(frozen=True)
class Probed:
    """A worker's answer to :func:`_probe`: the file it wrote, or what it cannot do."""

    wrote: str = ""
    problem: str = ""


def _probe(probes: str, sizes: dict[str, int], options: dict, token: str, dask_worker) -> Probed:
    """Runs on a worker (``client.run`` passes ``dask_worker``)."""
    address = dask_worker.address
    for path, size in sizes.items():
        try:
            seen = file_size(path, options)
        except OSError:
            return Probed(problem=f"worker {address} does not see the input {path}")
        if seen != size:
            return Probed(problem=f"worker {address} sees {path} with {seen} bytes, not {size}")
    target = f"{probes}/{uuid.uuid4().hex}"
    fs, path = filesystem(target, options)
    try:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, _mark(token, address))
    except OSError as err:
        return Probed(problem=f"worker {address} cannot write to {probes} ({err})")
    return Probed(wrote=target)


def _read_back(
    address: str, probed: Probed | Exception, token: str, storage_options: StorageOptions
) -> str:
    """What is wrong with a worker's answer: its problem, or a file this machine does not read
    as the worker wrote it; empty when nothing is (or the worker was lost as it was asked)."""
    if isinstance(probed, OSError):  # CommClosedError: lost; Dask runs nothing on it
        return ""
    if isinstance(probed, Exception):
        return f"worker {address} could not run the check ({type(probed).__name__}: {probed})"
    if probed.problem:
        return probed.problem
    fs, path = filesystem(probed.wrote, storage_options)
    try:
        found = fs.cat_file(path)
    except OSError:
        found = b""
    if found != _mark(token, address):
        return f"worker {address} wrote {probed.wrote}, and this machine does not find it there"
    return ""


def describe(client: Client) -> str:
    """``2 workers x 1 threads`` for a client's cluster."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    threads = sorted({w["nthreads"] for w in workers})
    return f"{len(workers)} workers x {'/'.join(map(str, threads))} threads"


def tightest_worker(client: Client) -> tuple[int, int] | None:
    """The (memory limit, threads) of the worker with the least memory per block it may
    hold, or None when no worker has a limit."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    limited = [(w["memory_limit"], w["nthreads"]) for w in workers if w.get("memory_limit")]
    return min(limited, key=lambda w: largest_block(*w), default=None)


def worker_memory(client: Client) -> dict[str, dict[str, float | None]]:
    """Per worker: its memory limit, its process's peak resident memory and the bytes it
    spilled to disk, in MB (for threads in our own process, the peak is the whole process's).
    Only the workers alive answer: one lost as it is asked is left out."""
    return client.run(_worker_memory, on_error="ignore")


def _worker_memory(dask_worker) -> dict[str, float | None]:
    """Runs on a worker (``client.run`` passes it in)."""
    spilled = sum(
        value
        for key, value in dask_worker.digests_total.items()
        if isinstance(key, tuple) and key[-2:] == ("disk-write", "bytes")
    )
    limit = dask_worker.memory_manager.memory_limit
    peak = peak_rss_mb()
    return {
        "memory_limit_mb": round(limit / 1e6, 1) if limit else None,
        "peak_rss_mb": None if peak is None else round(peak, 1),
        "spilled_mb": round(spilled / 1e6, 1),
    }
