"""Where the time of a run goes, per phase and per kind of task.

``python -m pipeline.benchmark.phases FILE [--repeats N] [-- RUN OPTIONS]`` runs
``python -m pipeline.run FILE`` N times, each in a fresh process with Dask's task stream
recorded, and prints medians of:

- the phases of the process: starting Python and importing the pipeline (pandas, pyarrow,
  Dask), starting the cluster, building and running the graph (``compute``: from the first
  task submitted to the last result), writing the small outputs, the rest (stopping the
  cluster) and the exit (from the end of ``main`` to the process's end, as the parent sees it);
- per kind of task (Dask's key prefix: ``read-block``, ``scatter``, ``gather``,
  ``write_tracks``...): its summed seconds in the threads that ran it, and its share;
- how busy the threads were: the tasks' summed seconds over (the task stream's span x threads);
- CPU per thread, from the process's start to the last result: the main thread (Python's
  start, the imports, the graph), Dask's task threads, the cluster's event loop (the
  scheduler's and the worker's, in this process), the others (Arrow's, Dask's offload
  thread...), and the cores they kept busy on average (threads of this process only: with
  ``-- --processes`` the tasks run in the workers' processes and count nowhere).

A thread's task seconds include waiting for Python's global lock between Arrow calls, so the
busy line is an upper bound of the work done; the CPU lines are what the threads used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.memory import imports_frozen


def one_run(argv: list[str]) -> dict[str, Any]:
    """Run ``pipeline.run`` in this process, recording the task stream through the run's
    ``observe`` seam; return the figures."""
    with imports_frozen():  # as python -m pipeline.run imports
        import psutil
        from distributed import get_task_stream

        import pipeline.run as cli
        from pipeline.execute import Seams

    started = psutil.Process().create_time()  # this module imported pipeline first
    figures: dict[str, Any] = {"import": time.time() - started}

    @contextmanager
    def recorded(client: Any) -> Iterator[None]:
        with get_task_stream(client) as stream:
            yield
        figures["threads"] = sum(client.nthreads().values())
        figures["tasks"] = stream.data
        figures["cpu"] = thread_cpu()  # before the cluster stops its threads
        figures["until_results"] = time.time() - started

    with tempfile.TemporaryDirectory() as tmp:
        code = cli.main([*argv, "--output", f"{tmp}/out", "-q"], Seams(observe=recorded))
        if code != 0:
            raise SystemExit(code)
        seconds = json.loads(Path(tmp, "out", "manifest.json").read_text())["seconds"]
    figures.update({k: seconds[k] for k in ("cluster_start", "compute", "write")})
    figures["ended"] = time.time()
    figures["rest"] = figures["ended"] - started - figures["import"] - seconds["total"]
    return _tasks(figures)


def _tasks(figures: dict[str, Any]) -> dict[str, Any]:
    """Replace the task stream by seconds per kind of task and the threads' busy share."""
    from dask.utils import key_split

    per_kind: dict[str, float] = defaultdict(float)
    spans = []
    for task in figures.pop("tasks"):
        for step in task["startstops"]:
            spans += [step["start"], step["stop"]]
            if step["action"] == "compute":
                per_kind[key_split(task["key"])] += step["stop"] - step["start"]
    span = max(spans) - min(spans) if spans else 0.0
    figures["per_kind"] = dict(per_kind)
    figures["busy"] = sum(per_kind.values()) / (span * figures["threads"]) if span else 0.0
    return figures


ROLES = {"MainThread": "main", "IO loop": "event loop"}


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user and system) of this process's threads so far, summed by role:
    ``main``, ``tasks`` (Dask's task threads), ``event loop``, ``other``."""
    import threading

    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    cpu: dict[str, float] = defaultdict(float)
    for t in psutil.Process().threads():
        name = names.get(t.id, "")
        role = "tasks" if "Dask-Default-Threads" in name else ROLES.get(name, "other")
        cpu[role] += t.user_time + t.system_time
    return dict(cpu)


def measure(argv: list[str], repeats: int) -> list[dict[str, Any]]:
    """``repeats`` runs, each in a fresh process (imports included)."""
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, "-m", "pipeline.benchmark.phases", "--one", *argv]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        run = json.loads(out.strip().splitlines()[-1])
        run["exit"] = time.time() - run.pop("ended")
        runs.append(run)
    return runs


def table(runs: list[dict[str, Any]]) -> str:
    """The medians as two Markdown tables and a line on the threads."""

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    phases = ("import", "cluster_start", "compute", "write", "rest", "exit")
    lines = ["| phase | seconds |", "| --- | --- |"]
    lines += [f"| {p} | {median([r[p] for r in runs]):.2f} |" for p in phases]
    total = median([sum(r[p] for p in phases) for r in runs])
    lines += [f"| whole process | {total:.2f} |", "", "| task | thread-seconds | share |"]
    lines += ["| --- | --- | --- |"]
    kinds = {k for r in runs for k in r["per_kind"]}
    sums = {k: median([r["per_kind"].get(k, 0.0) for r in runs]) for k in kinds}
    every = sum(sums.values()) or 1.0
    for kind, secs in sorted(sums.items(), key=lambda kv: -kv[1]):
        if secs / every >= 0.005:
            lines.append(f"| {kind} | {secs:.2f} | {secs / every:.0%} |")
    busy = median([r["busy"] for r in runs])
    lines += ["", f"threads busy with tasks: {busy:.0%} of the task stream's span", ""]
    lines += ["| thread, from the start to the last result | CPU seconds |", "| --- | --- |"]
    for role in ("main", "tasks", "event loop", "other"):
        lines.append(f"| {role} | {median([r['cpu'].get(role, 0.0) for r in runs]):.2f} |")
    cores = median([sum(r["cpu"].values()) / r["until_results"] for r in runs])
    lines.append(f"| all, per second of wall time (cores busy) | {cores:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--one"]:
        figures = one_run(args[1:])
        from pipeline.run import exit_process  # imported by the run already

        print(json.dumps(figures), flush=True)
        exit_process(0)  # as python -m pipeline.run ends
    p = argparse.ArgumentParser(
        prog="python -m pipeline.benchmark.phases",
        description="Where a run's time goes: phases and kinds of task, medians of fresh runs; "
        "options after -- go to pipeline.run.",
    )
    p.add_argument("input")
    p.add_argument("--repeats", type=int, default=3)
    cut = args.index("--") if "--" in args else len(args)
    ns = p.parse_args(args[:cut])
    print(table(measure([ns.input, *args[cut + 1 :]], ns.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
