"""python -m pipeline.run: organise a tracks CSV by genre on a Dask cluster.

The command line: arguments -> one Config -> the run (:mod:`pipeline.execute`) -> the
one-screen report; logging, signals and exit codes (0 success, 2 bad usage or input, 1 any
other failure, 130 interrupted).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import time
from typing import Any, NoReturn

from pipeline.memory import imports_frozen

with imports_frozen(__name__ == "__main__"):  # as the command only, not as a library
    from distributed import Client

    from pipeline.cluster import scheduler_address, unencrypted_remote
    from pipeline.config import DEFAULT_INPUT, Config, InputError, RunError
    from pipeline.execute import Outcome, Seams, run
    from pipeline.outputs import MANIFEST, OUTPUTS, SUMMARY_CSV

log = logging.getLogger("pipeline")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.run",
        description="Organise a CSV of music tracks by genre on a Dask cluster: per-genre "
        "summary, top tracks, and the clean rows as Parquet partitioned by genre.",
        epilog="Exit codes: 0 success, 2 bad usage or bad input, 1 anything else.",
    )
    p.add_argument(
        "input",
        nargs="?",
        default=None,
        help=f"CSV file, glob (data/part-*.csv) or fsspec URL; default {DEFAULT_INPUT}, "
        "written with synthetic data first when absent",
    )
    p.add_argument(
        "-o", "--output", default="output", help="output directory or URL (default: output)"
    )
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec storage option for input and output URLs, e.g. "
        "endpoint_url=http://127.0.0.1:9000; repeatable; a VALUE that is JSON (true, 30, "
        '{...}, "text") is taken as JSON, any other as text',
    )
    p.add_argument("--top", type=int, default=10, help="top tracks per genre (default: 10)")
    c = p.add_argument_group("cluster")
    c.add_argument(
        "--processes",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="worker processes (--processes) or threads in one process (default: threads)",
    )
    c.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers (default: 1 with threads, one per core with --processes)",
    )
    c.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        help="threads per worker (default: all cores with threads, 1 with --processes)",
    )
    c.add_argument("--memory-limit", default="auto", help="per worker, e.g. 2GiB (default: auto)")
    c.add_argument(
        "--blocksize",
        default=None,
        help="bytes per partition, e.g. 64MiB (default: from file size and threads)",
    )
    c.add_argument(
        "--dashboard-address",
        default="127.0.0.1:8787",
        help="where the dashboard listens (default: 127.0.0.1:8787; 127.0.0.1:0 for any free port)",
    )
    c.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of an existing Dask scheduler to use instead of a local cluster, e.g. "
        "tcp://host:8786 (default: --scheduler-file, else DASK_SCHEDULER_ADDRESS, else local)",
    )
    c.add_argument(
        "--scheduler-file",
        default=None,
        metavar="FILE",
        help="the scheduler's address from the file `dask scheduler --scheduler-file` writes",
    )
    c.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up reaching an existing scheduler after this long (default: 5)",
    )
    c.add_argument("--tls-ca-file", default=None, help="CA certificate for a tls:// scheduler")
    c.add_argument("--tls-cert", default=None, help="client certificate for a tls:// scheduler")
    c.add_argument("--tls-key", default=None, help="its private key, unless in the --tls-cert file")
    r = p.add_argument_group("bad input")
    r.add_argument(
        "--encoding",
        default="utf-8",
        help="text encoding of the input (default: utf-8; e.g. latin-1, cp1252)",
    )
    r.add_argument("--strict", action="store_true", help="fail (exit 2) on any rejected row")
    r.add_argument(
        "--max-rejects",
        default=None,
        metavar="N",
        help="fail when more rows than N (a count, or a fraction like 0.01 or 1%%) "
        "are rejected (default: no limit; every rejected row is in rejected_rows.csv)",
    )
    o = p.add_argument_group("output and logging")
    o.add_argument(
        "--report",
        default=None,
        metavar="FILE.html",
        help="save Dask's performance report of the run (task stream, profile; works offline)",
    )
    o.add_argument(
        "--keep-alive",
        action="store_true",
        help="after the outputs are written, keep the cluster and its dashboard up until Ctrl-C",
    )
    o.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    o.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bar")
    o.add_argument("--log-file", default=None, help="also write the log to this file")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    """The run's Config from parsed arguments (ValueError on bad values)."""
    from dask.utils import parse_bytes

    cores = os.cpu_count() or 1
    workers = args.workers or (cores if args.processes else 1)
    threads = args.threads_per_worker or (1 if args.processes else cores)
    return Config(
        input=args.input or str(DEFAULT_INPUT),
        output=args.output,
        storage_options=_storage_options(args.storage_option),
        top=args.top,
        blocksize=parse_bytes(args.blocksize) if args.blocksize else None,
        processes=args.processes,
        workers=workers,
        threads_per_worker=threads,
        memory_limit=args.memory_limit,
        dashboard_address=args.dashboard_address,
        scheduler=scheduler_address(args.scheduler, args.scheduler_file),
        connect_timeout=args.connect_timeout,
        tls_ca_file=args.tls_ca_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        progress=not args.quiet and sys.stdout.isatty(),
        verbose=args.verbose,
        encoding=args.encoding,
        strict=args.strict,
        report=args.report,
        keep_alive=args.keep_alive,
        max_rejects=_fraction(args.max_rejects) if args.max_rejects else None,
    )


def _fraction(text: str) -> float:
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"--max-rejects must be a count or a fraction, got {text!r}") from None


def _storage_options(pairs: list[str]) -> dict[str, Any]:
    """``--storage-option KEY=VALUE`` pairs: a VALUE that parses as JSON is taken as JSON
    (true, 30, {"region_name": "eu-west-1"}, "123"), any other as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not key or not equals:
            raise ValueError(f"--storage-option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def setup_logging(args: argparse.Namespace) -> None:
    """The report on stdout, warnings and errors on stderr (and all of it in --log-file)."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    report = logging.StreamHandler(sys.stdout)
    report.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [report, warnings]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file))
    logging.basicConfig(level=level, format="%(message)s", handlers=handlers, force=True)
    # Task failures are reported by the CLI in one line; Dask's own log of them only with -v.
    quiet = logging.ERROR if args.verbose else logging.CRITICAL
    for noisy in ("distributed", "bokeh", "tornado", "asyncio", "botocore", "aiobotocore", "s3fs"):
        logging.getLogger(noisy).setLevel(quiet)


def keep_alive(client: Client) -> None:
    """--keep-alive: leave the cluster and its dashboard up until Ctrl-C (or SIGTERM)."""
    log.info(
        "keep-alive the cluster and dashboard %s stay up; Ctrl-C to stop", client.dashboard_link
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping the cluster")


PREVIEW = (  # the summary's columns shown on the terminal
    "track_genre",
    "tracks",
    "unique_artists",
    "popularity_mean",
    "danceability_mean",
    "energy_mean",
    "loudness_mean",
)


def report(outcome: Outcome, cfg: Config) -> None:
    """The one-screen summary: preview, accounting, timings, where the outputs are."""
    result, summary = outcome.result, outcome.result.frames[SUMMARY_CSV]
    preview = summary[list(PREVIEW)].head(8).round(3).to_string(index=False)
    log.info("\n%s\n... %d genres in all", preview, len(summary))
    log.info(
        "rows       read %d = kept %d + rejected %d + duplicates %d",
        result.rows,
        result.kept,
        len(result.rejected),
        result.duplicates,
    )
    seconds = outcome.manifest["seconds"]
    log.info("seconds    %s", ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    names = ", ".join([*(o.shown for o in OUTPUTS), MANIFEST])
    log.info("outputs    %s/ (%s)", cfg.output, names)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the run like Ctrl-C: staging removed, cluster closed


def main(argv: list[str] | None = None, seams: Seams | None = None) -> int:
    """The command: parse, run, report; the exit code. ``seams``: how the run obtains its
    cluster and observes its compute (the benchmark's own; the defaults otherwise)."""
    args = parse_args(argv)
    setup_logging(args)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cfg = make_config(args)
        warn_if_exposed(cfg)

        def published(outcome: Outcome, client: Client) -> None:
            report(outcome, cfg)
            if cfg.keep_alive:
                keep_alive(client)

        run(cfg, args.input is not None, seams or Seams(), published)
    except (InputError, ValueError, RunError) as err:  # said in one line
        code = 1 if isinstance(err, RunError) else 2
        if args.verbose:
            log.exception("run failed" if code == 1 else "bad input")
        print(f"error: {err}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("error: interrupted; the previous output is untouched", file=sys.stderr)
        return 130
    except Exception as err:
        if args.verbose:
            log.exception("run failed")
        print(
            f"error: {type(err).__name__}: {err} (run with --verbose for details)", file=sys.stderr
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def warn_if_exposed(cfg: Config) -> None:
    """Binding the dashboard beyond loopback, or a plain TCP connection to another machine's
    scheduler, is allowed when asked for, with a warning."""
    host = cfg.dashboard_address.rpartition(":")[0]
    if not cfg.scheduler and host not in ("127.0.0.1", "localhost", "[::1]"):
        log.warning(
            "warning: the dashboard listens on %s, reachable from other machines; Dask has no "
            "authentication (use 127.0.0.1:PORT to keep it local)",
            cfg.dashboard_address,
        )
    if cfg.scheduler and unencrypted_remote(cfg.scheduler):
        log.warning(
            "warning: the connection to %s is unauthenticated and unencrypted; use a tls:// "
            "address (--tls-ca-file, --tls-cert, --tls-key) to leave this machine safely",
            cfg.scheduler,
        )


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` without the garbage collection Python runs over every
    object it tracks when it exits (0.4 s after a small run: docs/performance.md); everything
    else of an exit still happens: atexit handlers, flushing, waiting for threads."""
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    exit_process(main())
