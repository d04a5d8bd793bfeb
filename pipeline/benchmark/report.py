"""The study as a Markdown table and a plot (wall time and peak memory against rows).

Only runs whose answer was checked equal carry times; an engine whose runs all failed shows
its status and no numbers. Medians are over the counted repeats.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.benchmark.engines import REFERENCE

BASELINES = (REFERENCE, "pool")  # the speed-up columns
HEADER = (
    "engine",
    "wall s",
    "min-max s",
    "work s",
    "start/stop s",
    "CPU s",
    "peak MB",
    "data MB",
    "rows/s",
    "MB/s",
    *(f"vs {b}" for b in BASELINES),
    "status",
)


@dataclass(frozen=True)
class Stats:
    """Medians of one engine on one workload and size, over its runs that were checked equal."""

    workload: str
    engine: str
    rows: int
    bytes: int
    runs: int
    ok: int
    wall: list[float]
    work: float | None
    startup: float | None
    shutdown: float | None
    cpu: float | None
    peak_mb: float | None
    status: str
    worker_limit_mb: float | None = None  # the larger-than-memory engine's workers
    worker_peak_mb: float | None = None
    spilled_mb: float | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.wall) if self.wall else None


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return statistics.median(values) if values else None


def summarise(rows: Iterable[dict[str, Any]]) -> list[Stats]:
    """One :class:`Stats` per (workload, rows, engine), in the order first seen."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["workload"], int(row["rows"]), row["engine"]), []).append(row)
    out = []
    for (workload, size, engine), runs in groups.items():
        good = [r for r in runs if r["status"] == "ok"]
        failed = [r["status"] for r in runs if r["status"] != "ok"]
        status = "ok" if not failed else f"{len(good)}/{len(runs)} ok; {failed[0]}"
        out.append(
            Stats(
                workload=workload,
                engine=engine,
                rows=size,
                bytes=int(runs[0]["bytes"]),
                runs=len(runs),
                ok=len(good),
                wall=[float(r["wall_s"]) for r in good],
                work=_median(good, "work_s"),
                startup=_median(good, "startup_s"),
                shutdown=_median(good, "shutdown_s"),
                cpu=_median(good, "cpu_s"),
                peak_mb=_median(good, "peak_mb"),
                status=status,
                worker_limit_mb=_median(good, "worker_limit_mb"),
                worker_peak_mb=_median(good, "worker_peak_mb"),
                spilled_mb=_median(good, "spilled_mb"),
            )
        )
    return out


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _speedup(base: float | None, value: float | None) -> str:
    """How many times faster than ``base`` (2.00x: half the time)."""
    return f"{base / value:.2f}x" if base and value else "-"


def _rate(value: float) -> str:
    """1,234,567 -> 1.23M; 12,345 -> 12.3k."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def table_row(s: Stats, medians: dict[str, float | None]) -> list[str]:
    """The cells of one engine's line."""
    m = s.median
    speedups = [_speedup(medians.get(b), m) for b in BASELINES]
    return [
        s.engine,
        _num(m),
        f"{min(s.wall):.2f}-{max(s.wall):.2f}" if s.wall else "-",
        _num(s.work),
        f"{s.startup:.2f}/{s.shutdown or 0:.2f}" if s.startup is not None else "-",
        _num(s.cpu),
        _num(s.peak_mb, "{:,.0f}"),
        f"{s.bytes / 1e6:,.0f}",
        _rate(s.rows / m) if m else "-",
        _num(s.bytes / 1e6 / m if m else None, "{:.0f}"),
        *speedups,
        s.status,
    ]


def machine(rows: list[dict[str, Any]]) -> str:
    """One line on where and with what the runs ran (from the first row)."""
    if not rows:
        return ""
    r = rows[0]
    return (
        f"{r['cores']} cores, {r['ram_gib']} GiB RAM, {r['platform']}; Python "
        f"{r['python_version']}, pandas {r['pandas_version']}, pyarrow {r['pyarrow_version']}, "
        f"dask {r['dask_version']}; commit {r['commit']}, {r['date'][:10]}"
    )


def markdown(stats: list[Stats], about: str = "") -> str:
    """A Markdown table per workload and size: the engines' medians and speed-ups."""
    parts = [f"Machine: {about}"] if about else []
    for key in dict.fromkeys((s.workload, s.rows) for s in stats):
        group = [s for s in stats if (s.workload, s.rows) == key]
        medians = {s.engine: s.median for s in group}
        runs = max(s.runs for s in group)
        size = f"{key[1]:,} rows ({group[0].bytes / 1e6:,.1f} MB)"
        if key[0] == "read":  # each engine's own dataset: data MB says how large
            size = f"the datasets the full workload wrote from {key[1]:,} rows"
        title = f"### {key[0]}, {size}, median of {runs} runs"
        lines = [title, "", _line(HEADER), _line(["---"] * len(HEADER))]
        lines += [_line(table_row(s, medians)) for s in group]
        parts.append("\n".join(lines))
    limited = [s for s in stats if s.worker_limit_mb]
    if limited:
        parts.append(larger_than_memory(limited, stats))
    return "\n\n".join(parts) + "\n"


LIMITED_HEADER = (
    "rows",
    "input MB",
    "worker memory MB",
    "input / worker memory",
    "worker peak MB",
    "spilled MB",
    "wall s",
    f"{REFERENCE} peak MB",
)


def larger_than_memory(limited: list[Stats], stats: list[Stats]) -> str:
    """The runs of workers held to a memory limit, beside the reference's peak memory."""
    peaks = {(s.workload, s.rows): s.peak_mb for s in stats if s.engine == REFERENCE}
    lines = ["### larger than memory", "", _line(LIMITED_HEADER), _line(["---"] * 8)]
    for s in limited:
        lines.append(
            _line(
                [
                    f"{s.rows:,}",
                    f"{s.bytes / 1e6:,.0f}",
                    _num(s.worker_limit_mb, "{:,.0f}"),
                    f"{s.bytes / 1e6 / s.worker_limit_mb:.1f}x" if s.worker_limit_mb else "-",
                    _num(s.worker_peak_mb, "{:,.0f}"),
                    _num(s.spilled_mb, "{:,.0f}"),
                    _num(s.median),
                    _num(peaks.get((s.workload, s.rows)), "{:,.0f}"),
                ]
            )
        )
    return "\n".join(lines)


def _line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def plot(stats: list[Stats], path: Path, title: str = "") -> bool:
    """Wall time and peak memory against rows, log-log, per engine and workload; False when
    matplotlib is not installed (nothing written)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (time_ax, mem_ax) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    _series(time_ax, stats, lambda s: s.median, "wall time, s (median)")
    _series(mem_ax, stats, lambda s: s.peak_mb, "peak memory of the process tree, MB")
    time_ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _series(
    ax: Any, stats: list[Stats], value: Callable[[Stats], float | None], label: str
) -> None:
    """One line per (engine, workload): summary solid, full dashed, read dotted."""
    colors = {e: f"C{i}" for i, e in enumerate(dict.fromkeys(s.engine for s in stats))}
    for key in dict.fromkeys((s.engine, s.workload) for s in stats):
        points = sorted((s.rows, value(s)) for s in stats if (s.engine, s.workload) == key)
        points = [(x, y) for x, y in points if y]
        if points:
            style = {"summary": "-", "full": "--"}.get(key[1], ":")
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, style, color=colors[key[0]], marker="o", label=f"{key[0]} ({key[1]})")
    ax.set(xscale="log", yscale="log", xlabel="rows", ylabel=label)
    sizes = sorted({s.rows for s in stats})
    ax.set_xticks(sizes, [_rate(x) for x in sizes], minor=False)
    ax.xaxis.set_minor_formatter("")
    ax.yaxis.set_major_formatter("{x:g}")
    ax.yaxis.set_minor_formatter("{x:g}")
    ax.grid(True, which="both", alpha=0.3)


# -- the docs' performance page, from a results file -------------------------------------------

HEADLINE = (REFERENCE, "dask", "polars", "duckdb")  # the engines of a study's summary table


def studies(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows of a results file split into studies: consecutive rows of one commit."""
    return [list(g) for _, g in itertools.groupby(rows, key=lambda r: r["commit"])]


def _ratio(rows: list[dict[str, Any]], engine: str, other: str) -> str:
    """The median, and range, of ``engine``'s wall time over ``other``'s in the same round."""
    walls = {(r["engine"], r["repeat"]): float(r["wall_s"]) for r in rows if r["status"] == "ok"}
    ratios = sorted(
        walls[engine, repeat] / walls[other, repeat]
        for (name, repeat) in walls
        if name == engine and (other, repeat) in walls
    )
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def headline(rows: list[dict[str, Any]]) -> str:
    """A study in one table: per workload and size, the median wall time (and peak memory) of
    pandas, dask, Polars and DuckDB, and dask's time over Polars' and DuckDB's per round."""
    stats = summarise(rows)
    engines = [e for e in HEADLINE if any(s.engine == e for s in stats)]
    header = ["workload", "rows", *engines, "dask / polars, per round", "dask / duckdb, per round"]
    lines = [_line(header), _line(["---"] * len(header))]
    for workload, size in dict.fromkeys((s.workload, s.rows) for s in stats):
        cell = {s.engine: s for s in stats if (s.workload, s.rows) == (workload, size)}
        group = [r for r in rows if (r["workload"], int(r["rows"])) == (workload, size)]
        values = []
        for engine in engines:
            s = cell.get(engine)
            peak = f", {s.peak_mb:,.0f} MB" if s and s.peak_mb and workload != "summary" else ""
            values.append(f"{s.median:.2f} s{peak}" if s and s.median else "-")
        ratios = [_ratio(group, "dask", other) for other in ("polars", "duckdb")]
        lines.append(_line([workload, f"{size:,}", *values, *ratios]))
    return "\n".join(lines)


def newest_larger_than_memory(rows: list[dict[str, Any]]) -> str:
    """The larger-than-memory table of the newest study that has one, with its machine."""
    for study in reversed(studies(rows)):
        stats = summarise(study)
        limited = [s for s in stats if s.worker_limit_mb]
        if limited:
            table = larger_than_memory(limited, stats).split("\n", 2)[2]
            return f"{machine(study)}:\n\n{table}\n"
    return "No study has runs of workers held to a memory limit yet.\n"


def page(rows: list[dict[str, Any]]) -> str:
    """The generated part of the performance page: every study of a results file, newest
    first, each with its machine, versions, date and commit; the newest one in full."""
    parts = ["<!-- generated by `python docs/generate.py` from docs/benchmark-results.csv -->"]
    for number, study in enumerate(reversed(studies(rows))):
        first, last = study[0], study[-1]
        parts.append(
            f"### Study of commit `{first['commit']}`, {first['date'][:16]} to "
            f"{last['date'][11:16]} UTC\n\n{machine(study)}; {len(study)} runs.\n\n"
            f"Wall time, median of the counted runs (peak memory of the process tree):\n\n"
            f"{headline(study)}"
        )
        if number == 0:
            parts.append(markdown(summarise(study)).replace("### ", "#### "))
    return "\n\n".join(parts) + "\n"
