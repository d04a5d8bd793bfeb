"""This process's peak memory, for the run's manifest and the benchmark (standard library only
at import: the benchmark reads it before any engine's imports), giving Arrow's memory back, and
importing the run's libraries without Python's garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB, or None where the OS does not say.

    Linux's VmHWM starts fresh in a new process; ``ru_maxrss`` would be inherited from the
    parent across fork, so a process could never report less than the one that started it.
    """
    try:
        with open("/proc/self/status") as f:
            hwm = next(line for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(hwm.split()[1]) * 1024 / 1e6  # kB


def release_arrow_memory() -> None:
    """Give the memory Arrow's allocator (mimalloc) keeps after a task's tables are freed back
    to the system; called at the end of the tasks that allocate the most (scatter, gather,
    write_tracks). Dask counts that kept memory as the worker's, and a worker with a memory
    limit spills for it and pauses on it, maybe forever (measured: docs/larger-than-memory.md)."""
    import pyarrow as pa  # here: the module is read before any engine's imports

    pa.default_memory_pool().release_unused()


@contextmanager
def imports_frozen(enabled: bool = True) -> Iterator[None]:
    """Run the block (a process's imports of pandas, pyarrow, Dask and distributed) with
    Python's cyclic garbage collector paused, then freeze every object alive: the collector
    walks the hundreds of thousands of objects those imports create again and again while they
    are made, and never again once they are frozen, at exit included (docs/performance.md).
    For a process's entry point only (``enabled``): freezing keeps the caller's objects out of
    every later collection too."""
    if not enabled:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
