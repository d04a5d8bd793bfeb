"""This process's peak memory, for the run's manifest and the benchmark (standard library only:
the benchmark reads it before any engine's imports)."""

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
