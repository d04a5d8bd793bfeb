"""Lost workers: SIGKILL worker processes of a ``--processes`` run at moments chosen from the
run's progress, from the cluster's start to the publish; every run must exit 0 with the outputs
of an undisturbed run, and say so in one warning line. Workers all lost at once, for good, or
stopped for a while; two runs on one output."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import CSVS, FILES, popen_run
from distributed import Client

from pipeline.execute import PHASES, Seams
from pipeline.generate import generate
from pipeline.run import main

BLOCK = 1 << 20
CLUSTER = ("--processes", "--workers", "2", "--threads-per-worker", "1", "--blocksize", "1MiB")
LOST = (  # the one line on stderr, by when the run learns of the loss
    "warning: {n} worker(s) left or were restarted during the run (killed, or out of memory: see "
    "--memory-limit); Dask ran their tasks again, the outputs are complete"
)
WARNINGS = {
    "run": LOST.format(n=1),
    "cluster start": "warning: a worker process died while the cluster started; starting again",
    "after": "warning: 1 worker(s) left after the outputs were computed; the outputs are complete "
    "(the manifest lists the workers as they were then)",
}
LINE_BREAKS = "{} has line breaks inside quoted values: cutting its partitions at record ends"


@dataclass(frozen=True)
class Case:
    """An input and the outputs of an undisturbed run of it."""

    source: Path
    calm: Path

    @property
    def blocks(self) -> int:
        """The run's partitions at ``--blocksize 1MiB``."""
        return math.ceil(self.source.stat().st_size / BLOCK)


def calm_run(source: Path, out: Path) -> Case:
    assert main([str(source), "-o", str(out), "-q", "--dashboard-address", "127.0.0.1:0"]) == 0
    return Case(source, out)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """300,000 rows (about 50 MB, some 48 blocks of 1 MiB; far-away duplicates exist)."""
    folder = tmp_path_factory.mktemp("plain")
    return calm_run(generate(folder / "tracks.csv", rows=300_000, seed=5), folder / "calm")


@pytest.fixture(scope="module")
def packed(plain: Case, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """The same rows gzipped: one task decompresses them before any block is read."""
    folder = tmp_path_factory.mktemp("packed")
    with plain.source.open("rb") as src, gzip.open(folder / "tracks.csv.gz", "wb", 1) as dst:
        shutil.copyfileobj(src, dst)
    return calm_run(folder / "tracks.csv.gz", folder / "calm")


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """300,000 rows, every second track name over two lines: the first attempt finds a block
    cut inside a value, the quotes are counted over the whole file, the blocks cut again."""
    folder = tmp_path_factory.mktemp("broken")
    source = generate(folder / "tracks.csv", rows=300_000, seed=5, line_breaks=2)
    return calm_run(source, folder / "calm")


class Progress:
    """What a run has done so far: its staging directory's files, its stderr."""

    def __init__(self, out: Path, err: list[str]) -> None:
        self.out, self.err = out, err

    def _attempt(self) -> Path | None:
        found = list(self.out.parent.glob(f".{self.out.name}.staging-*/_attempt-0"))
        return found[0] if found else None

    def blocks(self) -> int:
        attempt = self._attempt()
        return len(list(attempt.glob("scratch/*.arrow"))) if attempt else 0

    def written(self) -> int:
        attempt = self._attempt()
        return len(list(attempt.glob("tracks/*/*.parquet"))) if attempt else 0

    def unpacking(self) -> bool:
        return bool(list(self.out.parent.glob(f".{self.out.name}.staging-*/_input/.*.tmp")))

    def counting_quotes(self) -> bool:
        return any("has line breaks inside quoted values" in line for line in self.err)


#: When to kill, the input it needs, and the warning a kill then gives.
MOMENTS: dict[str, tuple[str, Callable[[Progress, int, int], bool], str]] = {
    "cluster start": ("plain", lambda p, blocks, genres: True, "cluster start"),
    "decompressing": ("packed", lambda p, blocks, genres: p.unpacking(), "run"),
    "counting quotes": ("broken", lambda p, blocks, genres: p.counting_quotes(), "run"),
    "first block": ("plain", lambda p, blocks, genres: p.blocks() >= 1, "run"),
    "half the blocks": ("plain", lambda p, blocks, genres: p.blocks() >= blocks // 2, "run"),
    "last blocks": ("plain", lambda p, blocks, genres: p.blocks() >= blocks - 2, "run"),
    "gathering genres": (
        "plain",
        lambda p, blocks, genres: p.blocks() >= blocks and p.written() == 0,
        "run",
    ),
    "first genres written": ("plain", lambda p, blocks, genres: p.written() >= 1, "run"),
    "most genres written": (
        "plain",
        lambda p, blocks, genres: p.written() >= genres * 3 // 4,
        "run",
    ),
}


class Watched:
    """A run of the command in its own process, its stderr read as it comes."""

    def __init__(self, *args: str | Path) -> None:
        self.proc = popen_run(*args)
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def workers(self) -> list[psutil.Process]:
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]

    def when(self, ready: Callable[[], bool], timeout: float = 120) -> list[psutil.Process]:
        """The worker processes, once ``ready()`` and at least one exists."""
        deadline = time.monotonic() + timeout
        while not (ready() and (workers := self.workers())):
            assert self.proc.poll() is None, (self.proc.communicate(), self.err)
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.002)
        return workers

    def finish(self, timeout: float = 300) -> tuple[int, list[str]]:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return self.proc.returncode, self.err


def holding(workers: list[psutil.Process], folder: str) -> psutil.Process:
    """The worker with a file under ``folder`` open (the one decompressing), else the first."""
    for worker in workers:
        try:
            if any(folder in f.path for f in worker.open_files()):
                return worker
        except psutil.NoSuchProcess:
            continue
    return workers[0]


def tracks(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "tracks").astype({"track_genre": "str"})
    return df.sort_values(["track_genre", "track_id"], ignore_index=True)


def assert_same_outputs(out: Path, calm: Path) -> None:
    assert {p.name for p in out.iterdir()} == FILES
    for name in CSVS:
        assert (out / name).read_bytes() == (calm / name).read_bytes(), name
    pd.testing.assert_frame_equal(tracks(out), tracks(calm))
    assert not list(out.parent.glob(f".{out.name}.staging-*")) and not list(out.rglob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_worker_killed_during_the_compute_same_outputs(
    request: pytest.FixtureRequest, tmp_path: Path, moment: str
) -> None:
    kind, ready, warning = MOMENTS[moment]
    case: Case = request.getfixturevalue(kind)
    blocks = case.blocks
    genres = len(pd.read_csv(case.calm / "genre_summary.csv"))
    out = tmp_path / "out"
    run = Watched(case.source, "-o", out, "-q", *CLUSTER)
    workers = run.when(lambda: ready(Progress(out, run.err), blocks, genres))
    holding(workers, "_input").kill()
    code, err = run.finish()
    assert code == 0, err
    assert_same_outputs(out, case.calm)
    expected = [WARNINGS[warning]]
    if kind == "broken":
        expected.insert(0, LINE_BREAKS.format(case.source))
    assert err == expected


def stop_then_kill(client: Client) -> str:
    """Stop the first worker process now and kill it half a second later, while the run goes
    on (and asks it for something); its address."""
    address, pid = min(client.run(os.getpid).items())
    worker = psutil.Process(pid)
    worker.suspend()
    threading.Timer(0.5, worker.kill).start()
    return address


def kill_one_at(phase: str, noticed: bool) -> Callable[[str, Client], None]:
    """A listener to a run's progress that kills one worker process as the run reaches
    ``phase`` and returns once it is dead and the scheduler knows; or (not ``noticed``) stops
    it, returns, and kills it half a second later: as the run asks it for facts."""

    def progress(reached: str, client: Client) -> None:
        if reached != phase:
            return
        if not noticed:
            stop_then_kill(client)
            return
        address, pid = min(client.run(os.getpid).items())
        worker = psutil.Process(pid)
        worker.kill()
        worker.wait(timeout=30)
        deadline = time.monotonic() + 30
        while address in client.scheduler_info(n_workers=-1)["workers"]:
            assert time.monotonic() < deadline, f"the scheduler still lists {address}"
            time.sleep(0.01)

    return progress


@pytest.fixture(scope="module")
def small(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return calm_run(small_csv, tmp_path_factory.mktemp("small") / "calm")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "noticed"),
    [(p, True) for p in PHASES] + [("computed", False)],
    ids=[*PHASES, "computed, dies as asked for facts"],
)
def test_worker_killed_between_the_phases_same_outputs(
    small: Case, tmp_path: Path, capsys: pytest.CaptureFixture, phase: str, noticed: bool
) -> None:
    """Before the compute, as it ends (the run then asks the workers for facts: one that died a
    moment ago, the scheduler not knowing yet, must only be missing from them), once the
    outputs are written, the manifest too, and after the publish (the cluster then closes)."""
    out = tmp_path / "out"
    args = [str(small.source), "-o", str(out), "-q", *CLUSTER, "--dashboard-address", "127.0.0.1:0"]
    assert main(args, Seams(progress=kill_one_at(phase, noticed))) == 0
    assert_same_outputs(out, small.calm)
    manifest = json.loads((out / "manifest.json").read_text())
    late = PHASES.index(phase) > PHASES.index("computed")
    assert len(manifest["workers_lost"]) == (0 if late else 1)
    assert not set(manifest["workers_lost"]) & set(manifest["workers"])
    assert capsys.readouterr().err.splitlines() == [WARNINGS["after" if late else "run"]]


@pytest.mark.slow
def test_worker_dying_as_the_performance_report_is_made_is_left_out_of_it(
    small: Case, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--report`` asks every worker for its profile as the compute ends: Dask's report
    leaves out one that dies then; the run goes on."""

    @contextmanager
    def stop_one_as_the_compute_ends(client: Client) -> Iterator[None]:
        yield
        stop_then_kill(client)

    out, report = tmp_path / "out", tmp_path / "report.html"
    args = [str(small.source), "-o", str(out), "-q", *CLUSTER, "--report", str(report)]
    args += ["--dashboard-address", "127.0.0.1:0"]
    assert main(args, Seams(observe=stop_one_as_the_compute_ends)) == 0
    assert_same_outputs(out, small.calm)
    assert capsys.readouterr().err.splitlines() == [WARNINGS["run"]]
    assert "Dask Performance Report" in report.read_text()


@pytest.mark.slow
def test_every_worker_killed_at_once_is_survived(plain: Case, tmp_path: Path) -> None:
    """A local cluster's nannies start their workers again: the run goes on."""
    blocks = plain.blocks
    out = tmp_path / "out"
    run = Watched(plain.source, "-o", out, "-q", *CLUSTER)
    half = lambda: Progress(out, run.err).blocks() >= blocks // 2  # noqa: E731
    for worker in run.when(lambda: half() and len(run.workers()) == 2):
        worker.kill()
    code, err = run.finish()
    assert code == 0, err
    assert_same_outputs(out, plain.calm)
    assert err == [LOST.format(n=2)]


@pytest.mark.slow
def test_worker_stopped_for_20_seconds_then_continued(plain: Case, tmp_path: Path) -> None:
    """SIGSTOP, 20 s, SIGCONT: the run waits for it (Dask's timeouts are longer), nothing lost."""
    blocks = plain.blocks
    out = tmp_path / "out"
    run = Watched(plain.source, "-o", out, "-q", *CLUSTER)
    worker = run.when(lambda: Progress(out, run.err).blocks() >= blocks // 3)[0]
    worker.send_signal(signal.SIGSTOP)
    time.sleep(20)
    assert run.proc.poll() is None  # waiting for the stopped worker's tasks
    worker.send_signal(signal.SIGCONT)
    code, err = run.finish()
    assert (code, err) == (0, [])
    assert_same_outputs(out, plain.calm)


@pytest.mark.slow
def test_two_runs_on_one_output_never_mix(small: Case, tmp_path: Path) -> None:
    """Started at the same moment on the same --output, from different inputs: one publishes,
    the other is refused with one line (or, if one ended before the other began, the later
    one's output replaces the earlier's whole); never a mix."""
    other = generate(tmp_path / "other.csv", rows=12_000, seed=8)
    out = tmp_path / "out"
    runs = [Watched(source, "-o", out, "-q") for source in (small.source, other)]
    ends = [run.finish() for run in runs]
    refused = [
        f"error: {out}: another run is writing this output now; wait for it to finish or choose "
        "another --output"
    ]
    assert sorted(ends) in ([(0, []), (2, refused)], [(0, []), (0, [])]), ends
    winner = json.loads((out / "manifest.json").read_text())["input"]
    assert winner in ([str(small.source)], [str(other)])
    calm = small.calm if winner == [str(small.source)] else calm_run(other, tmp_path / "calm")
    assert_same_outputs(out, calm)
    assert (out / "_SUCCESS").exists()


@pytest.mark.slow
def test_workers_that_die_at_every_start_fail_the_run_cleanly(plain: Case, tmp_path: Path) -> None:
    """Every worker process killed as soon as it exists: the run starts its cluster 3 times."""
    out = tmp_path / "out"
    run = Watched(plain.source, "-o", out, "-q", *CLUSTER)
    deadline = time.monotonic() + 120
    while run.proc.poll() is None and time.monotonic() < deadline:
        for worker in run.workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
        time.sleep(0.01)
    code, err = run.finish()
    assert (code, err) == (
        1,
        [WARNINGS["cluster start"]] * 2
        + [
            "error: the local cluster's worker processes died while it started, 3 times "
            "(killed, or out of memory: see --memory-limit)"
        ],
    )
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))
