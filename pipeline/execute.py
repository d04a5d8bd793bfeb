"""One run of the job: plan, compute, verify, manifest, publish.

    input -> blocks planned for the cluster -> one compute of every output -> the accounting
    checked -> outputs written into the staging directory and verified -> manifest, _SUCCESS
    -> published

:class:`Seams` says how a run obtains its cluster, how its compute is observed and who hears
of its progress: the command uses the defaults, the benchmark its own (to time the cluster's
start and stop, to record the task stream), the fault tests theirs (to stop a worker at a
chosen phase), without patching the pipeline's functions.

A worker may be lost at any moment: during the compute Dask runs its tasks again; after it, the
run asks only the workers that are alive for facts, and a worker lost then is named in the
manifest (or, once that is written, in one warning line).
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from distributed import Client, KilledWorker, performance_report

from pipeline import job, publish
from pipeline.blocks import BadBytes, Plan, expand_input, plan_input
from pipeline.cluster import (
    check_shared_storage,
    connect,
    describe,
    tightest_worker,
    worker_memory,
)
from pipeline.config import Config, InputError, RunError
from pipeline.outputs import MANIFEST, OUTPUTS, SUCCESS
from pipeline.read import SplitInQuotes
from pipeline.unpack import unpack_inputs

log = logging.getLogger("pipeline")


def unobserved(client: Client) -> AbstractContextManager[Any]:
    """The default observer of a compute: none."""
    return nullcontext()


def unheard(phase: str, client: Client) -> None:
    """The default listener to a run's progress: none."""


#: What a run has done when it tells :attr:`Seams.progress`, in order.
PHASES = ("connected", "computed", "written", "sealed", "published")


@dataclass(frozen=True)
class Seams:
    """How a run obtains its cluster (a context manager that yields a Client and closes what
    it started, on every path), how its compute is observed (a context manager entered just
    before the first task is submitted and left once the last result is gathered) and who is
    told each phase of :data:`PHASES` as the run reaches it (the cluster connected, every
    result gathered, every output written and verified, the manifest and _SUCCESS written,
    the output published)."""

    connect: Callable[[Config], AbstractContextManager[Client]] = connect
    observe: Callable[[Client], AbstractContextManager[Any]] = unobserved
    progress: Callable[[str, Client], None] = unheard


@dataclass(frozen=True)
class Computed:
    """A run's compute: its result, the directory its tasks wrote to, its facts."""

    result: job.JobResult
    work: str
    facts: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A published run: what it computed, and its manifest."""

    result: job.JobResult
    manifest: dict[str, Any]


class Stopwatch:
    """The seconds of a run's stages, for the manifest."""

    def __init__(self) -> None:
        self.started_at, self.start = datetime.now(UTC), time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - begin


def run(
    cfg: Config,
    given_input: bool,
    seams: Seams = Seams(),
    published: Callable[[Outcome, Client], None] | None = None,
) -> Outcome:
    """The whole job for ``cfg``; the output is published only when complete and verified.
    ``published`` is called once it is, while the cluster is still up."""
    clock = Stopwatch()
    ensure_input(cfg, given_input, clock)
    with clock.stage("plan"):
        paths = expand_input(cfg.input, cfg.storage_options)
    with publish.Transaction(cfg.output, cfg.storage_options) as tx:
        begin = time.perf_counter()
        with seams.connect(cfg) as client:
            clock.seconds["cluster_start"] = time.perf_counter() - begin
            computed = compute(cfg, client, seams, tx.stage, paths, clock)
            manifest = seal(cfg, computed, tx, clock, lambda phase: seams.progress(phase, client))
            tx.publish()
            seams.progress("published", client)
            _warn_if_left(client, manifest["workers"])
            outcome = Outcome(computed.result, manifest)
            if published:
                published(outcome, client)
    return outcome


def ensure_input(cfg: Config, given: bool, clock: Stopwatch) -> None:
    """With no input given and no data/dataset.csv, write a synthetic one first."""
    if given or Path(cfg.input).exists():
        return
    from pipeline.generate import generate

    log.info("%s not found: writing a synthetic 114,000-row dataset there first", cfg.input)
    with clock.stage("generate"):
        generate(cfg.input, rows=114_000)


# -- the compute --------------------------------------------------------------------------------


def compute(
    cfg: Config, client: Client, seams: Seams, stage: str, paths: list[str], clock: Stopwatch
) -> Computed:
    """Compute every output in one graph on the client's cluster."""
    before = _workers(client)
    seams.progress("connected", client)
    cluster = describe(client)
    cfg.largest_block_for(tightest_worker(client))  # memory too small: refused before work
    if cfg.scheduler:  # workers elsewhere: they must share the input's and the output's storage
        check_shared_storage(client, stage, paths, cfg.storage_options)
    begin = time.perf_counter()
    read, names = unpack_inputs(paths, f"{stage}/{publish.UNPACKED}", cfg.storage_options)
    if names:
        clock.seconds["unpack"] = time.perf_counter() - begin
        log.info("unpacked   %s in %.1f s", ", ".join(names.values()), clock.seconds["unpack"])
    plan = _plan(client, cfg, read, names=names)
    log.info("input      %s (%s, %.1f MB)", cfg.input, _files(paths), plan.total_bytes / 1e6)
    log.info("partitions %d of up to %.1f MB", len(plan.blocks), plan.blocksize / 1e6)
    log.info("cluster    %s, dashboard %s", cluster, client.dashboard_link)
    report = performance_report(cfg.report, mode="inline") if cfg.report else nullcontext()
    with clock.stage("compute"), report:  # Dask's report skips a worker lost by then
        result, work, plan = _attempts(client, cfg, seams, stage, plan)
    seams.progress("computed", client)
    workers = worker_memory(client)  # those alive answer
    lost = sorted(before - set(workers))
    if lost:
        log.warning(
            "warning: %d worker(s) left or were restarted during the run (killed, or out of "
            "memory: see --memory-limit); Dask ran their tasks again, the outputs are complete",
            len(lost),
        )
    facts = {
        "input": paths,
        "bytes": plan.total_bytes,
        "partitions": len(plan.blocks),
        "cluster": cluster,
        "workers": workers,
        "workers_lost": lost,
    }
    return Computed(result, work, facts)


def _workers(client: Client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def _warn_if_left(client: Client, answered: Mapping[str, object]) -> None:
    """After the publish: one line when workers that gave the manifest its facts have left
    since (the outputs needed nothing more of them)."""
    if left := set(answered) - _workers(client):
        log.warning(
            "warning: %d worker(s) left after the outputs were computed; the outputs are "
            "complete (the manifest lists the workers as they were then)",
            len(left),
        )


def _attempts(
    client: Client, cfg: Config, seams: Seams, stage: str, plan: Plan
) -> tuple[job.JobResult, str, Plan]:
    """Compute the run's graph; return the result, the directory its tasks wrote to and the
    plan finally read.

    A file with line breaks inside quoted values is found while computing; its blocks are
    then cut at record ends (or, if that fails too, it is read as one partition) and the run
    starts again in a fresh directory (tasks of the first attempt may still run).
    """
    aligned: frozenset[str] = frozenset()
    whole: frozenset[str] = frozenset()
    for attempt in range(2 * len(plan.paths) + 1):
        work = f"{stage}/_attempt-{attempt}"
        try:
            built = job.build(plan, cfg.top, work, cfg.storage_options)
            with seams.observe(client):
                computed = _compute(client, built.collections(), cfg.progress)
            return job.collect(built, computed), work, plan
        except BadBytes as err:
            raise err.as_input_error() from err
        except SplitInQuotes as err:
            _wait_idle(client)  # tasks of this attempt must not write while we go on
            name = plan.names.get(err.path, err.path)
            if err.path in aligned:
                log.warning("%s: reading it as one partition (quotes do not pair up)", name)
                whole |= {err.path}
            else:
                log.warning(
                    "%s has line breaks inside quoted values: cutting its partitions at "
                    "record ends",
                    name,
                )
                aligned |= {err.path}
            plan = _plan(client, cfg, list(plan.paths), whole, aligned, plan.names)
    raise RuntimeError("could not plan the input's partitions")


def _plan(
    client: Client,
    cfg: Config,
    paths: list[str],
    whole: frozenset[str] = frozenset(),
    aligned: frozenset[str] = frozenset(),
    names: Mapping[str, str] | None = None,
) -> Plan:
    """The blocks for this cluster: its threads, and what its tightest worker's memory holds."""
    threads = sum(client.nthreads().values())
    return plan_input(paths, cfg, threads, whole, aligned, tightest_worker(client), names)


def _wait_idle(client: Client, timeout: float = 120) -> None:
    """Cancel what is queued and wait until no task runs on the cluster."""
    client.cancel(list(client.futures.values()), force=True)
    deadline = time.monotonic() + timeout
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)


def _files(paths: list[str]) -> str:
    return "1 file" if len(paths) == 1 else f"{len(paths)} files"


def _compute(client: Client, collections: list, progress: bool) -> list:
    """One compute for all outputs (the CSV is parsed once); a progress bar on a terminal."""
    from distributed import progress as progress_bar
    from distributed import wait

    futures = client.compute(collections)
    bar = threading.Thread(target=progress_bar, args=(futures,), daemon=True)  # till done
    if progress:
        bar.start()
    stalled = None
    while True:
        try:
            wait(futures, timeout=1)
            break
        except TimeoutError:
            stalled = _check_stalled(client, stalled)
    try:
        results = client.gather(futures)
    except KilledWorker as err:
        raise RunError(
            f"every worker that ran the task {err.task!r} died while running it "
            f"({err.allowed_failures + 1} of them: killed, or out of memory: see --memory-limit); "
            "nothing was published"
        ) from err
    if progress:
        bar.join(timeout=5)
        print()
    return results


STALLED_TOO_LONG = 60.0  # seconds a cluster may stay without a worker that can run a task


@dataclass(frozen=True)
class Stall:
    """Since when the cluster has had no worker that can run a task, and why."""

    workers: str  # "paused" or "gone"
    since: float


def _check_stalled(client: Client, stall: Stall | None) -> Stall | None:
    """Fail instead of waiting forever when, for :data:`STALLED_TOO_LONG` seconds, every
    worker has been paused (memory above 80% of its limit: memory that is not data, Python's
    and the libraries', cannot be spilled, so such a pause never ends) or the cluster has had
    no worker at all (an existing cluster's workers gone; a local cluster's nannies start
    theirs again at once)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    now = "gone" if not workers else "paused"
    if workers and any(w.get("status") != "paused" for w in workers):
        return None
    if stall is None or stall.workers != now:
        return Stall(now, time.monotonic())
    if time.monotonic() - stall.since <= STALLED_TOO_LONG:
        return stall
    if now == "gone":
        raise RunError(
            f"every worker has left the cluster and none has joined for {STALLED_TOO_LONG:.0f} "
            "s; nothing was published: start workers (dask worker SCHEDULER) and run again"
        )
    limit = min(w["memory_limit"] for w in workers)
    raise InputError(
        f"every worker has been paused at its memory limit ({limit / 2**20:.0f} MiB) for "
        f"{STALLED_TOO_LONG:.0f} s; give workers more memory (--memory-limit) or read smaller "
        "partitions (--blocksize)"
    )


# -- checks, writes and the manifest ------------------------------------------------------------


def check_rejects(cfg: Config, result: job.JobResult) -> None:
    """Fail the run when it rejected more rows than allowed, naming the first few."""
    rejected = result.rejected
    limit = cfg.reject_limit(result.rows)
    if limit is None or len(rejected) <= limit:
        return
    first = "; ".join(f"line {r.line}: {r.reason}" for r in rejected.head(3).itertuples())
    why = "--strict" if cfg.strict else f"the limit of {limit} (--max-rejects)"
    raise InputError(
        f"{cfg.input}: {len(rejected)} of {result.rows} rows rejected, more than {why}; "
        f"first: {first}"
    )


def write_outputs(result: job.JobResult, work: str, tx: publish.Transaction) -> None:
    """Write every output into the staging directory, verify each there, and check that every
    row read is kept, rejected or a dropped duplicate."""
    for output in OUTPUTS:
        output.write(result.frames[output.name], work, tx)
    problems = [p for o in OUTPUTS if (p := o.verify(result.frames[o.name], tx))]
    if result.rows != result.kept + len(result.rejected) + result.duplicates or problems:
        raise RuntimeError(
            f"accounting does not hold: read {result.rows}, kept {result.kept}, rejected "
            f"{len(result.rejected)}, duplicates {result.duplicates}; {'; '.join(problems)}"
        )


def seal(
    cfg: Config,
    computed: Computed,
    tx: publish.Transaction,
    clock: Stopwatch,
    progress: Callable[[str], None] = lambda phase: None,
) -> dict[str, Any]:
    """Check the result, write and verify every output in the staging directory, then the
    manifest, then _SUCCESS; return the manifest. ``progress`` hears "written" and "sealed"."""
    result = computed.result
    if result.rows == 0:
        raise InputError(f"{cfg.input}: has a header but no data rows")
    check_rejects(cfg, result)
    with clock.stage("write"):
        write_outputs(result, computed.work, tx)
    progress("written")
    clock.seconds["total"] = time.perf_counter() - clock.start
    manifest = {
        **computed.facts,
        "rows_read": result.rows,
        "rows_kept": result.kept,
        "rows_rejected": len(result.rejected),
        "duplicates_dropped": result.duplicates,
        **result.counts,  # genres, and the counts above again
        "engine": engine_name(cfg),
        "versions": versions(),
        "config": {
            **{k: str(v) for k, v in dataclasses.asdict(cfg).items()},
            "storage_options": str(sorted(cfg.storage_options)),  # names only: secrets
        },
        "seconds": {k: round(v, 3) for k, v in clock.seconds.items()},
        "started_at": clock.started_at.isoformat(),
        "ended_at": datetime.now(UTC).isoformat(),
    }
    publish.write_json(manifest, tx.path(MANIFEST), cfg.storage_options)
    publish.write_text("", tx.path(SUCCESS), cfg.storage_options)
    progress("sealed")
    return manifest


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("genre-pipeline", "dask", "distributed", "pandas", "pyarrow", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def engine_name(cfg: Config) -> str:
    if cfg.scheduler:
        return f"dask.distributed, scheduler {cfg.scheduler}"
    kind = "processes" if cfg.processes else "threads"
    return f"dask.distributed LocalCluster ({cfg.workers} x {cfg.threads_per_worker} {kind})"
