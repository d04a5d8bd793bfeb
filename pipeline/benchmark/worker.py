"""One measurement in a fresh process: import an engine, run one workload, report.

``python -m pipeline.benchmark.worker MODULE WORKLOAD INPUT REPORT [--out-dir DIR]``

The report (a pickle) holds the epoch time when the work ended (the parent measures wall time
from just before it started this process), the CPU seconds of the whole process tree, this
process's own peak RSS, the engine's phases and its answer. Nothing after the work is timed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil

from pipeline.benchmark.engines import WORKLOADS
from pipeline.memory import peak_rss_mb


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its reaped children and its live descendants."""
    own = os.times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0.0)
            total += getattr(t, "children_system", 0.0)
    return total


def measure(module: str, workload: str, path: str, out_dir: str | None) -> dict[str, Any]:
    """Run the workload once and return the report; only the engine call is inside."""
    engine = importlib.import_module(module)
    work = getattr(engine, workload)
    args = (path, out_dir) if workload == "full" else (path,)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    result = work(*args, phases)
    engine_s = time.perf_counter() - start
    end = time.time()
    return {
        "end": end,
        "engine_s": engine_s,
        "cpu_s": tree_cpu_seconds(),
        "own_peak_mb": peak_rss_mb() or 0.0,
        "phases": phases,
        "result": result,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure, write the report."""
    p = argparse.ArgumentParser(prog="python -m pipeline.benchmark.worker")
    p.add_argument("module")
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("input")
    p.add_argument("report", type=Path)
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    report = measure(args.module, args.workload, args.input, args.out_dir)
    with open(args.report, "wb") as f:
        pickle.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
