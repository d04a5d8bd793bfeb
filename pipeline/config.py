"""The one configuration object of a run (built once from the command line, then passed down),
and the error for bad input or usage."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_INPUT = Path("data/dataset.csv")
MIB = 1 << 20
BLOCK_CAP = 48 * MIB  # the largest default block
BLOCK_FLOOR = 16 * MIB  # more than one block per thread only while blocks stay this large
# A worker's memory (measured: docs/larger-than-memory.md): about WORKER_BASE for Python, the
# libraries and the allocators' pools, plus BLOCK_FACTOR times the block for each thread;
# it must stay under the share of its limit at which Dask pauses the worker.
WORKER_BASE = 300 * MIB
BLOCK_FACTOR = 8
PAUSE_SHARE = 0.8


class InputError(Exception):
    """Bad input or usage: the CLI prints the message as one line and exits 2."""


class RunError(Exception):
    """The run could not finish for a reason outside the input (its cluster, say): the CLI
    prints the message as one line and exits 1."""


@dataclass(frozen=True)
class Config:
    """Settings of one run; invalid values raise ``ValueError`` naming the value."""

    input: str = str(DEFAULT_INPUT)
    output: str = "output"  # a directory, or an fsspec URL (s3://bucket/prefix)
    # fsspec's options for input and output URLs; not in the repr: they may hold credentials
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, hash=False)
    top: int = 10
    blocksize: int | None = None  # bytes per partition; None: chosen from file size and threads
    processes: bool = False  # worker processes, or threads in one process
    workers: int = 1
    threads_per_worker: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"
    scheduler: str | None = None  # an existing scheduler's address (see cluster.scheduler_address)
    connect_timeout: float = 5.0  # seconds to reach an existing scheduler
    tls_ca_file: str | None = None  # TLS to a tls:// scheduler; unset: Dask's distributed.comm.tls
    tls_cert: str | None = None
    tls_key: str | None = None
    progress: bool = False  # a progress bar (the CLI shows one on a terminal)
    verbose: bool = False  # Dask's own logs (its workers' too) and tracebacks
    report: str | None = None  # save Dask's performance report (HTML) here
    keep_alive: bool = False  # keep the cluster and dashboard up after the run until Ctrl-C
    encoding: str = "utf-8"  # of the input files (ASCII-compatible: utf-8, latin-1, cp1252, ...)
    strict: bool = False  # any rejected row fails the run
    max_rejects: float | None = None  # more rejected rows fail the run: a count, or a fraction < 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", str(self.output))
        object.__setattr__(self, "storage_options", dict(self.storage_options))
        for name in ("top", "workers", "threads_per_worker"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if self.max_rejects is not None and self.max_rejects < 0:
            raise ValueError(
                f"--max-rejects must be a count or a fraction >= 0, got {self.max_rejects}"
            )
        try:
            ascii_compatible = ",\n".encode(self.encoding) == b",\n"
        except LookupError:
            raise ValueError(f"--encoding: unknown encoding {self.encoding!r}") from None
        if not ascii_compatible:
            raise ValueError(f"--encoding {self.encoding}: only ASCII-compatible encodings work")
        if self.blocksize is not None and self.blocksize < 1024:
            raise ValueError(f"--blocksize must be at least 1 KiB, got {self.blocksize} bytes")
        if self.connect_timeout <= 0:
            raise ValueError(
                f"--connect-timeout must be above 0 seconds, got {self.connect_timeout}"
            )
        self._check_tls()

    def _check_tls(self) -> None:
        """TLS files are for a tls:// scheduler and must exist."""
        files = {
            "--tls-ca-file": self.tls_ca_file,
            "--tls-cert": self.tls_cert,
            "--tls-key": self.tls_key,
        }
        given = {option: path for option, path in files.items() if path}
        if given and not (self.scheduler or "").startswith("tls://"):
            raise ValueError(
                f"{', '.join(given)}: only for a tls:// scheduler, got {self.scheduler or 'none'}"
            )
        for option, path in given.items():
            if not Path(path).is_file():
                raise ValueError(f"{option} {path}: no such file")

    def reject_limit(self, rows: int) -> int | None:
        """The most rejected rows a run of ``rows`` rows may have, or None for no limit."""
        if self.strict:
            return 0
        if self.max_rejects is None:
            return None
        return int(self.max_rejects * rows) if self.max_rejects < 1 else int(self.max_rejects)

    def blocksize_for(
        self, total_bytes: int, threads: int, worker: tuple[int, int] | None = None
    ) -> int:
        """Bytes per block: the configured size, or enough blocks to keep every thread busy
        (four per thread, fewer while blocks would be below 16 MiB, at least one) without
        blocks above 48 MiB. The cap keeps the peak memory flat with input size; the floor
        spares small inputs the per-block costs (both measured: docs/design.md, Defaults).

        ``worker``: the (memory limit, threads) of the most constrained worker; blocks are then
        no larger than fits it (:meth:`largest_block_for`)."""
        per_thread = min(4, max(1, total_bytes // (threads * BLOCK_FLOOR)))
        default = min(BLOCK_CAP, max(MIB, total_bytes // (per_thread * threads) + 1))
        size = self.blocksize or int(default)
        largest = self.largest_block_for(worker)
        return size if largest is None else min(size, largest)

    def largest_block_for(self, worker: tuple[int, int] | None) -> int | None:
        """The largest block the (memory limit, threads) ``worker`` holds, or None without a
        worker. A limit too small for a 1 MiB block, or a ``--blocksize`` larger than that,
        is an :class:`InputError`."""
        if worker is None:
            return None
        limit, per_worker = worker
        largest = largest_block(limit, per_worker)
        if largest < MIB:
            raise InputError(
                f"memory limit {limit / MIB:.0f} MiB per worker is too small: a worker with "
                f"{per_worker} thread(s) needs at least {least_memory(per_worker) / MIB:.0f} MiB "
                f"(about {WORKER_BASE // MIB} MiB for Python and the libraries plus "
                f"{BLOCK_FACTOR} x a 1 MiB block per thread, below Dask's pause at "
                f"{PAUSE_SHARE:.0%}); give workers more memory (--memory-limit) or fewer "
                "threads (--threads-per-worker)"
            )
        if self.blocksize and self.blocksize > largest:
            raise InputError(
                f"--blocksize {self.blocksize / MIB:.0f} MiB is too large for workers of "
                f"{limit / MIB:.0f} MiB with {per_worker} thread(s): a worker needs about "
                f"{WORKER_BASE // MIB} MiB plus {BLOCK_FACTOR} x the block per thread, below "
                f"Dask's pause at {PAUSE_SHARE:.0%}; use --blocksize {largest // MIB}MiB or "
                "less (or leave it out), or give workers more memory (--memory-limit)"
            )
        return largest


def largest_block(memory_limit: int, threads: int) -> int:
    """The largest block a worker of ``memory_limit`` bytes with ``threads`` threads can read
    without reaching Dask's pause line."""
    return int((PAUSE_SHARE * memory_limit - WORKER_BASE) / (BLOCK_FACTOR * threads))


def least_memory(threads: int, block: int = MIB) -> int:
    """The smallest memory limit of a worker with ``threads`` threads for ``block``."""
    return int((WORKER_BASE + BLOCK_FACTOR * block * threads) / PAUSE_SHARE) + 1
