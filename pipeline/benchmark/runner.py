"""*How* engines are measured: one runner for every engine, workload and size.

Each measurement is a fresh process (:mod:`pipeline.benchmark.worker`) so imports, caches and
memory never carry over. This process samples the summed RSS of the worker and all its
descendants every 50 ms, and after the worker ends checks its answer against the pandas
engine's (outside every timed region). Engines run interleaved, round by round, so drift of a
shared machine hits all alike; warm-up rounds are run and checked but not recorded.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from pipeline.benchmark import check, engines, results
from pipeline.benchmark.engines import CORE, ENGINES, QUERIES, REFERENCE, WORKLOADS
from pipeline.generate import generate

Echo = Callable[[str], None]
SAMPLE_SECONDS = 0.05


def default_memory_limit_mb() -> float:
    """90% of the physical memory: a run that needs more is stopped before the OS must act."""
    return 0.9 * psutil.virtual_memory().total / 1e6


@dataclass(frozen=True)
class Study:
    """What to measure: engines x workloads x sizes, how often, and where things go."""

    rows: tuple[int, ...] = (114_000, 1_000_000)
    engines: tuple[str, ...] = CORE
    workloads: tuple[str, ...] = WORKLOADS
    repeats: int = 3
    warmup: int = 1
    output: Path = Path("benchmark-results")
    data_dir: Path = Path("data/bench")
    seed: int = 42
    timeout: float = 3600.0  # seconds per measurement
    memory_limit_mb: float = field(default_factory=default_memory_limit_mb)

    def __post_init__(self) -> None:
        if not self.rows or min(self.rows) < 1:
            raise ValueError(f"--rows must be whole numbers of at least 1, got {self.rows}")
        if not self.engines:
            raise ValueError("--engines must name at least one engine")
        if not self.workloads or set(self.workloads) - set(WORKLOADS):
            raise ValueError(f"--workload must be among {WORKLOADS}, got {self.workloads}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(
                f"--repeats must be at least 1 and --warmup at least 0, "
                f"got {self.repeats} and {self.warmup}"
            )
        if self.timeout <= 0 or self.memory_limit_mb <= 0:
            raise ValueError(
                f"--timeout and the memory limit must be positive, "
                f"got {self.timeout} s and {self.memory_limit_mb} MB"
            )


@dataclass(frozen=True)
class Case:
    """One engine on one workload and input file."""

    engine: str
    module: str
    workload: str
    path: Path
    rows: int


@dataclass
class Run:
    """The outcome of one measurement; a failed run has a status and no times."""

    status: str
    wall_s: float | None = None
    work_s: float | None = None
    startup_s: float | None = None
    shutdown_s: float | None = None
    cpu_s: float | None = None
    peak_mb: float | None = None
    workers: dict[str, float] = field(default_factory=dict)  # the engine's worker_* figures
    result: Any = field(default=None, repr=False)

    def fields(self) -> dict[str, Any]:
        """The run's columns of the results table, rounded."""
        times = ("wall_s", "work_s", "startup_s", "shutdown_s", "cpu_s")
        out: dict[str, Any] = {k: _round(getattr(self, k), 4) for k in times}
        workers = {k: _round(self.workers.get(k), 1) for k in WORKER_FIGURES}
        return {**out, "peak_mb": _round(self.peak_mb, 1), **workers, "status": self.status}


WORKER_FIGURES = ("worker_limit_mb", "worker_peak_mb", "spilled_mb")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class TreeMemory:
    """The peak of the summed RSS of a process and all its descendants, sampled in a thread;
    the whole tree is killed when it exceeds ``limit_mb``."""

    def __init__(self, pid: int, limit_mb: float, interval: float = SAMPLE_SECONDS) -> None:
        self.pid, self.limit_mb, self.interval, self.peak_mb = pid, limit_mb, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with suppress(psutil.Error):
            root = psutil.Process(self.pid)
            while True:
                self.peak_mb = max(self.peak_mb, tree_rss(root) / 1e6)
                if self.peak_mb > self.limit_mb:
                    kill_tree(root)
                if self._stop.wait(self.interval):
                    return


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of a process and all its live descendants."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def kill_tree(root: psutil.Process) -> None:
    """Kill a process we started and all its descendants."""
    with suppress(psutil.Error):
        for proc in [*root.children(recursive=True), root]:
            with suppress(psutil.Error):
                proc.kill()


def measure(case: Case, scratch: Path, study: Study) -> Run:
    """Run a case in a fresh worker process and collect its timings, memory and answer."""
    report, log = scratch / "report.pkl", scratch / "worker.log"
    cmd = [sys.executable, "-m", "pipeline.benchmark.worker", case.module, case.workload]
    cmd += [str(case.path), str(report)]
    cmd += ["--out-dir", str(scratch / "out")] if case.workload == "full" else []
    with open(log, "wb") as out:
        start = time.time()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        with TreeMemory(proc.pid, study.memory_limit_mb) as memory:
            code = wait(proc, study.timeout)
    if memory.peak_mb > study.memory_limit_mb:
        return Run(status=f"stopped: memory over {study.memory_limit_mb / 1e3:.1f} GB")
    if code != 0:
        return Run(status=failure(code, log, study.timeout))
    with open(report, "rb") as f:
        rep = pickle.load(f)
    phases = rep["phases"]
    fixed = phases.get("startup", 0.0) + phases.get("shutdown", 0.0)
    return Run(
        status="ok",
        wall_s=rep["end"] - start,
        work_s=rep["engine_s"] - fixed,
        startup_s=phases.get("startup"),
        shutdown_s=phases.get("shutdown"),
        cpu_s=rep["cpu_s"],
        peak_mb=max(memory.peak_mb, rep["own_peak_mb"]),
        workers={k: phases[k] for k in WORKER_FIGURES if k in phases},
        result=rep["result"],
    )


def wait(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit code of ``proc``, or None after killing it (and its descendants) on timeout."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with suppress(psutil.Error):
            kill_tree(psutil.Process(proc.pid))
        proc.wait()
        return None


def failure(code: int | None, log: Path, timeout: float) -> str:
    """The status of a worker that did not finish: timeout, or its last line of output."""
    if code is None:
        return f"timeout after {timeout:g} s"
    lines = log.read_text(errors="replace").strip().splitlines()
    return f"error: {lines[-1] if lines else f'worker exited with code {code}'}"


def judge(run: Run, want: Any, out_dir: Path, workload: str) -> Run:
    """The run as is if its answer equals ``want``; else a failure without times."""
    if run.status != "ok":
        return run
    if want is None:
        return Run(status=f"unchecked: no {REFERENCE} answer to compare with")
    problem = check.compare(run.result, want)
    if problem is None and workload == "full":
        problem = check.compare_tracks(out_dir / "tracks", want[0])
    return run if problem is None else Run(status=f"mismatch: {problem}")


def measure_checked(case: Case, want: Any, study: Study) -> Run:
    """Measure a case in a scratch directory, check its answer, remove the scratch."""
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=study.output) as tmp:
        run = measure(case, Path(tmp), study)
        if want is None and case.engine == REFERENCE:
            want = run.result
        return judge(run, want, Path(tmp) / "out", case.workload)


def input_file(data_dir: Path, rows: int, seed: int, echo: Echo) -> Path:
    """The cached generated input of this size and seed; written only when absent."""
    path = data_dir / f"tracks-{rows}-seed{seed}.csv"
    if not path.exists():
        echo(f"generating {path} ({rows:,} rows; kept for later studies)")
        generate(path, rows=rows, seed=seed)
    return path.resolve()


def available(
    names: tuple[str, ...], modules: Mapping[str, str], echo: Echo
) -> dict[str, ModuleType]:
    """The engines that can be imported, the reference first; a note for each skipped one."""
    loaded: dict[str, ModuleType] = {}
    for name in sorted(dict.fromkeys(names), key=lambda n: n != REFERENCE):
        if name not in modules:
            raise ValueError(f"unknown engine {name!r}; choose among {', '.join(modules)}")
        try:
            loaded[name] = engines.load(modules[name])
        except ModuleNotFoundError as err:
            echo(f"note: engine {name} skipped: {err.name} is not installed (the bench extra)")
    return loaded


def group_runs(
    study: Study, cases: Mapping[str, Case], echo: Echo
) -> Iterator[tuple[str, int, Run]]:
    """Every counted run of one workload and size: (engine, repeat, run), rounds interleaved.

    ``cases`` holds the engines to measure and always the reference's case: when the
    reference engine is not among those measured, it runs once, unrecorded, for its answer.
    """
    names = [n for n in cases if n != REFERENCE or n in study.engines]
    want = None
    if REFERENCE not in names:
        want = measure_checked(cases[REFERENCE], None, study).result
    for repeat in range(1 - study.warmup, study.repeats + 1):
        for name in names:
            case = cases[name]
            run = measure_checked(case, want, study)
            if name == REFERENCE and want is None and run.status == "ok":
                want = run.result
            label = f"warm-up {repeat + study.warmup}" if repeat < 1 else f"repeat {repeat}"
            wall = f"{run.wall_s:8.2f} s" if run.wall_s is not None else "       - s"
            echo(f"{case.workload:<7} {case.rows:>11,} {name:<14} {label:<10} {wall}  {run.status}")
            if repeat >= 1:
                yield name, repeat, run


def datasets(study: Study, cases: Mapping[str, Case], root: Path, echo: Echo) -> dict[str, Case]:
    """The ``read`` cases: each engine's ``full`` run once (not recorded) writes its dataset
    under ``root``; an engine whose run fails is left out, with a note."""
    out = {}
    for name, case in cases.items():
        scratch = root / name
        scratch.mkdir()
        run = measure(Case(name, case.module, "full", case.path, case.rows), scratch, study)
        if run.status != "ok":
            echo(f"note: engine {name} skipped for read: writing its dataset: {run.status}")
            continue
        out[name] = Case(name, QUERIES, "read", scratch / "out" / "tracks", case.rows)
    return out


def size_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (a dataset)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_study(study: Study, modules: Mapping[str, str] = ENGINES, echo: Echo = print) -> list:
    """Run the study; append every counted run to ``results.csv``; return those rows. Rows of
    the read workload count the bytes of the dataset read, not of the CSV."""
    out = study.output / "results.csv"
    study.output.mkdir(parents=True, exist_ok=True)
    results.check_header(out)
    loaded = available((REFERENCE, *study.engines), modules, echo)
    shared = results.environment()
    rows: list[dict[str, Any]] = []
    for workload in study.workloads:
        needs = "full" if workload == "read" else workload
        names = [n for n in loaded if n in study.engines and hasattr(loaded[n], needs)]
        for skipped in [n for n in loaded if n in study.engines and n not in names]:
            echo(f"note: engine {skipped} has no {workload} workload; skipped for it")
        if workload == "read" and names and not _can_query(echo):
            continue
        for size in study.rows if names else ():
            path = input_file(study.data_dir, size, study.seed, echo)
            cases = {n: Case(n, modules[n], needs, path, size) for n in [REFERENCE, *names]}
            with tempfile.TemporaryDirectory(prefix=".datasets-", dir=study.output) as tmp:
                if workload == "read":
                    cases = datasets(study, cases, Path(tmp), echo)
                if REFERENCE not in cases:
                    echo(f"note: no {REFERENCE} answer for {workload} at {size:,} rows; skipped")
                    continue
                sizes = {n: size_bytes(c.path) for n, c in cases.items()}
                for name, repeat, run in group_runs(study, cases, echo):
                    row = {"date": results.now(), **shared, "engine": name, "workload": workload}
                    row |= {"rows": size, "bytes": sizes[name], "repeat": repeat}
                    row |= run.fields()
                    results.append(out, row)
                    rows.append(row)
    return rows


def _can_query(echo: Echo) -> bool:
    """Whether the read workload's query engines (DuckDB and Polars) are installed."""
    try:
        import duckdb  # noqa: F401
        import polars  # noqa: F401
    except ModuleNotFoundError as err:
        echo(f"note: workload read skipped: {err.name} is not installed (the bench extra)")
        return False
    return True
