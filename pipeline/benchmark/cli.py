"""python -m pipeline.benchmark: run a study, append its rows, print and save table and plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from pipeline.benchmark import report, runner
from pipeline.benchmark.engines import CORE, ENGINES, WORKLOADS
from pipeline.benchmark.runner import Study

PROG = "python -m pipeline.benchmark"


class _Parser(argparse.ArgumentParser):
    """Errors are one line on stderr and exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _rows(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated whole numbers of at least 1 (114000,1_000_000)."""
    try:
        rows = tuple(int(part) for part in text.split(","))
    except ValueError:
        rows = ()
    if not rows or min(rows) < 1:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers >= 1 like 114000,1000000: {text!r}"
        )
    return rows


def _engines(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated engine names, or ``all``."""
    names = tuple(ENGINES) if text == "all" else tuple(text.split(","))
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown engine {unknown[0]!r}; choose among {', '.join(ENGINES)} or all"
        )
    return names


def _count(low: int) -> type:
    """argparse type: a whole number of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Time the same work on several engines (pandas, the old multiprocessing "
        "Pool, Dask, and Polars and DuckDB when installed), each run in a fresh process and "
        "checked equal to pandas; append the runs to DIR/results.csv, print a Markdown "
        "table (also saved as table.md) and plot benchmark.png.",
        epilog="The default is the quick study. The full study: "
        f"{PROG} --rows 114000,2000000,10000000,20000000 --engines all --repeats 5",
    )
    p.add_argument(
        "--rows",
        type=_rows,
        default=(114_000, 1_000_000),
        help="input sizes (default: 114000,1000000)",
    )
    p.add_argument(
        "--engines",
        type=_engines,
        default=CORE,
        help=f"comma-separated, or all (default: {','.join(CORE)}; all: {','.join(ENGINES)})",
    )
    p.add_argument(
        "--workload",
        choices=[*WORKLOADS, "all"],
        default="all",
        help="summary: "
        "read and summarise by genre; full: all that pipeline.run does (default: all)",
    )
    p.add_argument("--repeats", type=_count(1), default=3, help="counted runs (default: 3)")
    p.add_argument("--warmup", type=_count(0), default=1, help="uncounted runs first (default: 1)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("benchmark-results"),
        metavar="DIR",
        help="results.csv, table.md, benchmark.png (default: benchmark-results)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data/bench"),
        metavar="DIR",
        help="generated inputs, kept and reused (default: data/bench)",
    )
    p.add_argument("--seed", type=int, default=42, help="generator seed (default: 42)")
    p.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds per measurement "
        "before it is killed and recorded as a failure (default: 3600)",
    )
    return p


def study_of(args: argparse.Namespace) -> Study:
    """The study the arguments describe."""
    return Study(
        rows=args.rows,
        engines=args.engines,
        workloads=WORKLOADS if args.workload == "all" else (args.workload,),
        repeats=args.repeats,
        warmup=args.warmup,
        output=args.output,
        data_dir=args.data_dir,
        seed=args.seed,
        timeout=args.timeout,
    )


def _progress(line: str) -> None:
    """Progress and notes go to stderr, so stdout holds the table alone."""
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse, run the study, print the table, save table and plot; return the exit code
    (1 when some run failed or did not match the pandas answer)."""
    args = parser().parse_args(argv)
    try:
        study = study_of(args)
        rows = runner.run_study(study, echo=_progress)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the runs finished so far are in results.csv", file=sys.stderr)
        return 130
    stats, about = report.summarise(rows), report.machine(rows)
    table = report.markdown(stats, about)
    print(table)
    (study.output / "table.md").write_text(table)
    if not report.plot(stats, study.output / "benchmark.png", about):
        _progress("note: matplotlib is not installed: no plot (install the bench extra)")
    _progress(f"results appended to {study.output / 'results.csv'}; table.md and plot beside it")
    return 0 if all(s.status == "ok" for s in stats) else 1
