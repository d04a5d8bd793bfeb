"""The append-only results table: one row per measured run, with its machine and versions.

The header is fixed; a file with another header is never appended to (move it away or use
another ``--output``), so every row of a file means the same thing.
"""

from __future__ import annotations

import csv
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

LIBRARIES = ("pandas", "pyarrow", "numpy", "dask", "distributed", "polars", "duckdb")
FIELDS: tuple[str, ...] = (
    "date",
    "commit",
    "cores",
    "ram_gib",
    "platform",
    "engine",
    "workload",
    "rows",
    "bytes",
    "repeat",
    "wall_s",
    "work_s",
    "startup_s",
    "shutdown_s",
    "cpu_s",
    "peak_mb",
    "worker_limit_mb",  # the larger-than-memory engine: total memory limit of its workers,
    "worker_peak_mb",  # the highest peak of one worker process,
    "spilled_mb",  # and what they spilled to disk
    "status",
    "python_version",
    *(f"{lib}_version" for lib in LIBRARIES),
)


def environment() -> dict[str, Any]:
    """The fields every row shares: git commit, machine and library versions."""
    out: dict[str, Any] = {
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
    }
    for lib in LIBRARIES:
        try:
            out[f"{lib}_version"] = version(lib)
        except PackageNotFoundError:
            out[f"{lib}_version"] = ""
    return out


def git_commit() -> str:
    """``git rev-parse --short HEAD`` of this checkout (``-dirty`` if tracked files changed)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_header(path: Path) -> None:
    """Refuse a results file whose header is not :data:`FIELDS` (ValueError naming it)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != FIELDS:
        raise ValueError(
            f"{path}: has another header than this benchmark writes; "
            "move it away or choose another --output"
        )


def append(path: Path, row: dict[str, Any]) -> None:
    """Append one row (missing fields blank), writing the header first in a new file."""
    check_header(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="raise", restval="")
        if new:
            writer.writeheader()
        writer.writerow({k: "" if v is None else v for k, v in row.items()})


def read(path: Path) -> list[dict[str, str]]:
    """Every row of a results file, as text."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
