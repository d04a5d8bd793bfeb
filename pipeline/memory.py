"""This process's peak memory, for the run's manifest and the benchmark (standard library only
at import: the benchmark reads it before any engine's imports), and giving Arrow's memory back."""

from __future__ import annotations


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
    limit spills for it and pauses on it, maybe forever: 11.5M rows on one worker of 600 MiB,
    without it after gather and write_tracks 2 of 6 runs stopped after 60 s paused (peak
    500-520 MB, 0.9-2.9 GB spilled), with it 7 of 7 finished (peak 423-465 MB, 0-21 MB
    spilled). Without a limit: 2M rows, peak 534 -> 457 MB from the release after scatter
    (README, Design and Larger than memory)."""
    import pyarrow as pa  # here: the module is read before any engine's imports

    pa.default_memory_pool().release_unused()
