"""Existing clusters: real `dask scheduler` and `dask worker` processes, TLS, version checks,
and the addresses that must fail fast with one line."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import dask
import pandas as pd
import psutil
import pytest
from conftest import CSVS, assert_frames_match, popen_run, reference
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed import Client
from distributed.security import Security

from pipeline import execute
from pipeline.cluster import connect, describe, scheduler_address, version_mismatches
from pipeline.config import Config, InputError, RunError
from pipeline.run import main, make_config, parse_args, warn_if_exposed

DASK = Path(sys.executable).parent / "dask"
ROOT = Path(__file__).parents[1]
HINT = "(--scheduler, --scheduler-file or DASK_SCHEDULER_ADDRESS)"
# a command in a mount namespace of its own, an empty tmpfs over the directory given first
OWN_MOUNTS = ("unshare", "--mount", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"')


# --- a throwaway certificate authority -------------------------------------------------------


def make_certs(folder: Path, name: str) -> dict[str, Path]:
    """A CA and one certificate it signs for 127.0.0.1, for server and client use (scheduler,
    workers and client share it, as in Dask's own TLS tests)."""
    now = dt.datetime.now(dt.UTC)

    def sign(subject: str, key, issuer: x509.Name | None, issuer_key) -> x509.Certificate:
        subject_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject_name)
            .issuer_name(issuer or subject_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if issuer is not None:
            ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            builder = builder.add_extension(x509.SubjectAlternativeName([ip]), False)
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = sign(f"{name} CA", ca_key, None, ca_key)
    cert = sign("127.0.0.1", key, ca.subject, ca_key)
    pem, fmt = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    folder.mkdir(parents=True, exist_ok=True)
    paths = {part: folder / f"{name}-{part}.pem" for part in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))
    paths["key"].write_bytes(key.private_bytes(pem, fmt, serialization.NoEncryption()))
    return paths


def tls_args(certs: dict[str, Path]) -> list[str]:
    """The same three options for `dask scheduler`, `dask worker` and our CLI."""
    ca, cert, key = (str(certs[part]) for part in ("ca", "cert", "key"))
    return ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]


# --- clusters started from the command line --------------------------------------------------


class DaskCluster:
    """A scheduler and its workers, started from the command line as a user would:
    `dask scheduler` on 127.0.0.1 (free ports) and one-thread `dask worker` processes
    (``worker_path`` first on their PYTHONPATH, ``certs`` for TLS)."""

    def __init__(self, folder: Path, certs: dict[str, Path] | None, worker_path: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.scheduler_file = folder, folder / "scheduler.json"
        self.tls = tls_args(certs) if certs else []
        self.security = None
        if certs:
            files = [str(certs[part]) for part in ("ca", "cert", "key")]
            names = ("tls_ca_file", "tls_client_cert", "tls_client_key")
            self.security = Security(**dict(zip(names, files, strict=True)))
        paths = os.pathsep.join(filter(None, [worker_path, str(ROOT)]))
        self.env = {**os.environ, "PYTHONPATH": paths}
        self.env.pop("DASK_SCHEDULER_ADDRESS", None)
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, wrap: Sequence[str] = ()) -> subprocess.Popen:
        with (self.folder / f"{name}.log").open("w") as log:
            command = [*wrap, str(DASK), *args]
            proc = subprocess.Popen(command, stdout=log, stderr=log, env=self.env)
        self.processes.append(proc)
        return proc

    def start_scheduler(self) -> None:
        protocol = ["--protocol", "tls", *self.tls] if self.tls else []
        file = self.scheduler_file
        args = ["--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(file)]
        args += ["--dashboard-address", "127.0.0.1:0"]
        scheduler = self.start("scheduler", "scheduler", *args, *protocol)
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().rstrip().endswith("}"):
            log = (self.folder / "scheduler.log").read_text()
            assert scheduler.poll() is None and time.monotonic() < deadline, log
            time.sleep(0.1)
        info = json.loads(file.read_text())
        self.address, self.dashboard_port = info["address"], info["services"]["dashboard"]

    def start_worker(self, private: Path | None = None) -> None:
        """A `dask worker`; with ``private``, in a mount namespace of its own where an empty
        tmpfs lies over that directory (a worker on another machine, whose disk is not ours)."""
        args = [self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"]
        wrap = [*OWN_MOUNTS, str(private)] if private else []
        self.start(f"worker-{len(self.processes)}", "worker", *args, *self.tls, wrap=wrap)

    def workers_seen(self, wait_for: int = 0) -> int:
        """Workers the scheduler knows, through a new client: it still serves."""
        with Client(self.address, timeout=30, security=self.security) as client:
            if wait_for:
                client.wait_for_workers(wait_for, timeout=60)
            return len(client.scheduler_info(n_workers=-1)["workers"])

    def stop(self) -> None:
        for proc in reversed(self.processes):  # workers first, then the scheduler
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def dask_cluster(
    folder: Path,
    workers: int,
    certs: dict[str, Path] | None = None,
    worker_path: str = "",
    private: Path | None = None,
) -> Iterator[DaskCluster]:
    """A running cluster of ``workers`` workers (each with ``private`` hidden, if given); every
    process stopped on the way out."""
    cluster = DaskCluster(folder, certs, worker_path)
    try:
        cluster.start_scheduler()
        for _ in range(workers):
            cluster.start_worker(private)
        assert cluster.workers_seen(wait_for=workers) == workers
        yield cluster
    finally:
        cluster.stop()


def assert_still_running(cluster: DaskCluster, workers: int) -> None:
    """Our run closed only its client: every process lives and the scheduler still serves."""
    assert [p.poll() for p in cluster.processes] == [None] * (workers + 1)
    assert cluster.workers_seen() == workers


def run_cli(*args: str | Path, timeout: float = 120) -> tuple[int, str, str]:
    """`python -m pipeline.run ARGS` in its own process: exit code, stdout, stderr."""
    proc = popen_run(*args)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def assert_same_outputs(got: Path, want: Path, csv: Path) -> None:
    """Byte-equal CSV outputs, equal to plain pandas, and the same Parquet rows."""
    for name in CSVS:
        assert (got / name).read_bytes() == (want / name).read_bytes(), name
    want_summary, want_top = reference(csv)
    assert_frames_match(pd.read_csv(got / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(got / "top_tracks.csv"), want_top)
    keys = ["track_genre", "track_id"]
    a, b = (
        pd.read_parquet(d / "tracks").sort_values(keys).reset_index(drop=True) for d in (got, want)
    )
    pd.testing.assert_frame_equal(a, b)


BLOCKS = ("--blocksize", "256KiB")  # several partitions, the same on every cluster


@pytest.fixture(scope="module")
def local_output(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The outputs of a run on the default local cluster, to compare with."""
    out = tmp_path_factory.mktemp("local") / "out"
    code, _, err = run_cli(small_csv, "-o", out, *BLOCKS, "-q")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def tcp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """One scheduler and two workers on loopback TCP, shared by the tests of this module."""
    with dask_cluster(tmp_path_factory.mktemp("tcp-cluster"), workers=2) as cluster:
        yield cluster


# --- runs on a real cluster ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--scheduler", "--scheduler-file", "DASK_SCHEDULER_ADDRESS"])
def test_scheduler_run_equals_local_and_leaves_the_cluster_running(
    how: str,
    tcp_cluster: DaskCluster,
    local_output: Path,
    small_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    given = {
        "--scheduler": ["--scheduler", tcp_cluster.address],
        "--scheduler-file": ["--scheduler-file", str(tcp_cluster.scheduler_file)],
        "DASK_SCHEDULER_ADDRESS": ["-q"],
    }[how]
    # with a flag, the variable names a port where nothing listens: the flag must win
    env = tcp_cluster.address if how == "DASK_SCHEDULER_ADDRESS" else "tcp://127.0.0.1:9"
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", env)
    code, stdout, stderr = run_cli(small_csv, "-o", out, *BLOCKS, *given)
    assert (code, stderr) == (0, "")  # loopback: no warning
    if how != "DASK_SCHEDULER_ADDRESS":  # not quiet: the cluster's dashboard link is shown
        link = f"http://127.0.0.1:{tcp_cluster.dashboard_port}/status"
        assert f"cluster    2 workers x 1 threads, dashboard {link}" in stdout
    assert_same_outputs(out, local_output, small_csv)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cluster"] == "2 workers x 1 threads"
    assert manifest["engine"] == f"dask.distributed, scheduler {tcp_cluster.address}"
    assert_still_running(tcp_cluster, workers=2)


def _own_mounts() -> str:
    """Why a worker cannot have a mount namespace of its own here, or empty if it can."""
    try:
        command = [*OWN_MOUNTS, "/mnt", "true"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "no unshare command"
    return "" if done.returncode == 0 else f"unshare --mount: {done.stderr.strip()} (not root?)"


@pytest.fixture(scope="module")
def apart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaskCluster, Path]]:
    """Two workers that do not see the directory returned (a tmpfs of their own over it), as
    workers on other machines do not see this machine's disk; every other path they share."""
    if why := _own_mounts():
        pytest.skip(f"workers in a mount namespace of their own: {why}")
    private = tmp_path_factory.mktemp("private")
    folder = tmp_path_factory.mktemp("apart-cluster")
    with dask_cluster(folder, workers=2, private=private) as cluster:
        yield cluster, private


@pytest.mark.slow
def test_scheduler_output_the_workers_do_not_share_is_refused_before_work(
    apart: tuple[DaskCluster, Path], small_csv: Path
) -> None:
    cluster, private = apart
    (out := private / "out").mkdir()
    (out / "_SUCCESS").write_text("")  # a previous output: untouched
    code, _, err = run_cli(small_csv, "-o", out, "--scheduler", cluster.address)
    assert code == 2, err
    head = f"error: the workers of the cluster at {cluster.address} do not share this machine's "
    assert err.startswith(f"{head}storage: worker tcp://127.0.0.1:"), err
    assert f"wrote {private}/.out.staging-" in err and ", and this machine does not find it" in err
    assert err.endswith(
        "; put the input and --output on storage that every worker and this machine reach under "
        "the same name (s3://..., a shared filesystem)\n"
    )
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in private.iterdir()) == [".out.lock", "out"]  # no staging left
    assert [p.name for p in out.iterdir()] == ["_SUCCESS"]
    assert_still_running(cluster, workers=2)


@pytest.mark.slow
def test_scheduler_input_the_workers_do_not_see_is_refused_before_work(
    apart: tuple[DaskCluster, Path], small_csv: Path, tmp_path: Path
) -> None:
    cluster, private = apart
    hidden = private / "tracks.csv"
    hidden.write_bytes(small_csv.read_bytes())
    code, _, err = run_cli(hidden, "-o", tmp_path / "out", "--scheduler", cluster.address)
    assert code == 2, err
    assert "machine's storage: worker tcp://127.0.0.1:" in err, err
    assert f" does not see the input {hidden}; put the input and --output on storage" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_scheduler_storage_the_workers_share_gives_the_local_outputs(
    apart: tuple[DaskCluster, Path], local_output: Path, small_csv: Path, tmp_path: Path
) -> None:
    """The same cluster, an output on a path every worker sees: the probe passes, and leaves
    nothing behind."""
    cluster, _ = apart
    args = (small_csv, "-o", tmp_path / "out", *BLOCKS, "--scheduler", cluster.address)
    code, _, err = run_cli(*args)
    assert (code, err) == (0, "")
    assert_same_outputs(tmp_path / "out", local_output, small_csv)
    assert not list((tmp_path / "out").rglob("_probe*"))


@pytest.mark.slow
def test_scheduler_whose_workers_all_die_fails_the_run_in_one_line(
    small_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Every `dask worker` process (nanny and worker) killed as the compute starts, none
    joining again: exit 1 after the stall limit (2 s here, 60 s by default), the previous
    output intact, no staging left, the scheduler still up."""
    monkeypatch.setattr(execute, "STALLED_TOO_LONG", 2)
    (out := tmp_path / "out").mkdir()
    (out / "_SUCCESS").write_text("")
    with dask_cluster(tmp_path / "cluster", workers=1) as cluster:

        @contextmanager
        def kill_every_worker(client: Client) -> Iterator[None]:
            for proc in cluster.processes[1:]:
                tree = psutil.Process(proc.pid)
                for p in [*tree.children(recursive=True), tree]:
                    p.kill()
            yield

        args = [str(small_csv), "-o", str(out), "--scheduler", cluster.address, "-q"]
        assert main(args, execute.Seams(observe=kill_every_worker)) == 1
        assert capsys.readouterr().err == (
            "error: every worker has left the cluster and none has joined for 2 s; nothing was "
            "published: start workers (dask worker SCHEDULER) and run again\n"
        )
        assert cluster.processes[0].poll() is None
        assert cluster.workers_seen() == 0
    assert [p.name for p in out.iterdir()] == ["_SUCCESS"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "cluster", "out"]


@pytest.mark.slow
def test_a_task_that_kills_every_worker_it_runs_on_fails_the_run_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dask gives up on a task once the workers running it died ``allowed-failures`` + 1 times
    (a block too large for any worker's memory, say): the run says so in one line. On
    `dask worker` processes: a LocalCluster of ours could hang closing while its nanny starts
    the worker again."""
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "1")
    die = dask.delayed(os._exit)(1)
    with (
        dask_cluster(tmp_path / "cluster", workers=1) as cluster,
        Client(cluster.address, timeout=30) as client,
        pytest.raises(RunError) as err,
    ):
        execute._compute(client, [die], progress=False)
    assert re.fullmatch(
        r"every worker that ran the task '_exit-[0-9a-f-]+' died while running it \(2 of them: "
        r"killed, or out of memory: see --memory-limit\); nothing was published",
        str(err.value),
    ), err.value


@pytest.mark.slow
def test_scheduler_dashboard_port_by_mistake_fails_within_the_timeout(
    tcp_cluster: DaskCluster, small_csv: Path, tmp_path: Path
) -> None:
    """The dashboard accepts the connection and waits for HTTP: Dask's client alone hangs."""
    address = f"tcp://127.0.0.1:{tcp_cluster.dashboard_port}"
    args = [small_csv, "-o", tmp_path / "out", "--scheduler", address, "--connect-timeout", "2"]
    code, _, err = run_cli(*args, timeout=30)
    assert code == 2
    assert err.startswith(f"error: the Dask scheduler at {address} did not answer within 2 s;")
    assert_still_running(tcp_cluster, workers=2)


@pytest.mark.slow
def test_scheduler_tls_with_options_or_dask_config(
    local_output: Path, small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_certs(tmp_path / "certs", "cluster")
    other = make_certs(tmp_path / "certs", "other")  # another CA: the scheduler refuses it
    with dask_cluster(tmp_path / "cluster", workers=1, certs=certs) as cluster:
        assert cluster.address.startswith("tls://127.0.0.1:")
        code, _, err = run_cli(
            small_csv,
            "-o",
            tmp_path / "a",
            *BLOCKS,
            "-q",
            "--scheduler",
            cluster.address,
            *tls_args(certs),
        )
        assert (code, err) == (0, "")
        assert_same_outputs(tmp_path / "a", local_output, small_csv)

        # no options: Dask's own configuration (here from its environment variables) applies
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CA_FILE", str(certs["ca"]))
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT", str(certs["cert"]))
        monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY", str(certs["key"]))
        args = (small_csv, "-o", tmp_path / "b", *BLOCKS, "-q", "--scheduler", cluster.address)
        assert run_cli(*args) == (0, "", "")
        assert_same_outputs(tmp_path / "b", local_output, small_csv)

        # PEM text in Dask's config instead of files (how README uses Coiled's certificate)
        pem = {part: certs[part].read_text() for part in ("ca", "cert", "key")}
        tls = {"ca-file": pem["ca"], "client.cert": pem["cert"], "client.key": pem["key"]}
        with (
            dask.config.set({f"distributed.comm.tls.{k}": v for k, v in tls.items()}),
            connect(Config(scheduler=cluster.address)) as client,
        ):
            assert describe(client) == "1 workers x 1 threads"

        # options win over the configuration: a certificate of another CA is refused
        code, _, err = run_cli(
            small_csv, "-o", tmp_path / "c", "--scheduler", cluster.address, *tls_args(other)
        )
        assert code == 2 and err.startswith(
            f"error: cannot connect to the Dask scheduler at {cluster.address}: "
        )
        assert err.endswith(f"check the address {HINT} and the TLS settings\n")
        assert err.count("\n") == 1 and not (tmp_path / "c").exists()
        assert_still_running(cluster, workers=1)


@pytest.mark.slow
def test_scheduler_without_workers_yet_waits_for_the_first(
    local_output: Path, small_csv: Path, tmp_path: Path
) -> None:
    """Batch and cloud clusters start their workers after the scheduler."""
    with dask_cluster(tmp_path / "cluster", workers=0) as cluster:
        proc = popen_run(small_csv, "-o", tmp_path / "out", *BLOCKS, "--scheduler", cluster.address)
        try:
            assert proc.stderr and proc.stderr.readline() == (  # a warning: on stderr
                f"waiting for the first worker to join {cluster.address} (Ctrl-C stops)\n"
            )
            cluster.start_worker()
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert (proc.returncode, err) == (0, "")
        assert_same_outputs(tmp_path / "out", local_output, small_csv)
        assert_still_running(cluster, workers=1)


def fake_distribution(folder: Path, name: str, release: str) -> Path:
    """A directory whose metadata says ``name`` is at ``release``: first on a worker's
    PYTHONPATH it makes that worker report the release (the code it runs is unchanged)."""
    info = folder / f"{name.replace('-', '_')}-{release}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {release}\n")
    return folder


@pytest.mark.slow
def test_scheduler_version_mismatch_is_one_line_exit_2(small_csv: Path, tmp_path: Path) -> None:
    old = fake_distribution(tmp_path / "old", "genre-pipeline", "0.0.1")
    with dask_cluster(tmp_path / "cluster", workers=1, worker_path=str(old)) as cluster:
        args = (small_csv, "-o", tmp_path / "out", "--scheduler", cluster.address)
        code, _, err = run_cli(*args, timeout=60)  # a hang fails
        ours = version("genre-pipeline")
        assert (code, err) == (
            2,
            f"error: the cluster at {cluster.address} has other package versions than this "
            f"machine: genre-pipeline: client {ours}, workers 0.0.1; install the same versions "
            "on every node (and pip install genre-pipeline there)\n",
        )
        assert not (tmp_path / "out").exists()
        assert_still_running(cluster, workers=1)


# --- fast: addresses, options, messages ------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_unreachable_fails_within_the_timeout(small_csv: Path, tmp_path: Path) -> None:
    """Dask retries a refused port until its timeout. In its own process (30 s for a 2 s
    timeout): a hang fails the test instead of stalling it."""
    address = f"tcp://127.0.0.1:{closed_port()}"
    args = [small_csv, "-o", tmp_path / "out", "--scheduler", address]
    code, _, err = run_cli(*args, "--connect-timeout", "2", timeout=30)
    assert code == 2
    assert err == (
        f"error: the Dask scheduler at {address} did not answer within 2 s; check that it runs "
        f"and the address {HINT}, or allow longer with --connect-timeout\n"
    )


def test_scheduler_port_that_never_answers_fails_within_the_timeout(
    small_csv: Path, tmp_path: Path
) -> None:
    """A port that accepts and stays silent (the dashboard's, say): Dask alone waits forever.
    In its own process, so that a hang fails the test instead of stalling it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts connections; nobody answers
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        args = [small_csv, "-o", tmp_path / "out", "--scheduler", address]
        code, _, err = run_cli(*args, "--connect-timeout", "1.5", timeout=30)
    assert code == 2
    assert err.startswith(f"error: the Dask scheduler at {address} did not answer within 1.5 s;")


def test_scheduler_address_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "scheduler.json"
    file.write_text(json.dumps({"type": "Scheduler", "address": "tcp://from-file:8786"}))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://from-env:8786")
    dask.config.refresh()  # Dask reads its environment variables into its config
    try:
        assert dask.config.get("scheduler-address") == "tcp://from-env:8786"
        assert scheduler_address("tcp://flag:8786", str(file)) == "tcp://flag:8786"
        assert scheduler_address(None, str(file)) == "tcp://from-file:8786"
        assert scheduler_address(None, None) == "tcp://from-env:8786"
        cfg = make_config(parse_args(["--scheduler-file", str(file)]))
        assert cfg.scheduler == "tcp://from-file:8786"
        monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
        dask.config.refresh()
        assert scheduler_address(None, None) is None  # a local cluster
    finally:
        monkeypatch.undo()
        dask.config.refresh()


def test_scheduler_file_missing_or_not_a_scheduler_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError) as err:
        scheduler_address(None, str(missing))
    assert str(err.value) == (
        f"--scheduler-file {missing}: no such file; it is written by "
        f"`dask scheduler --scheduler-file {missing}`"
    )
    (tmp_path / "bad.json").write_text('{"type": "Scheduler"}')
    with pytest.raises(InputError, match=r"bad.json: not a Dask scheduler file \(KeyError"):
        scheduler_address(None, str(tmp_path / "bad.json"))


@pytest.mark.parametrize(
    ("address", "warned"),
    [
        ("tcp://10.1.2.3:8786", True),
        ("10.1.2.3:8786", True),  # Dask's default protocol is tcp
        ("tcp://scheduler.example.org:8786", True),
        ("ws://10.1.2.3:8786", True),
        ("tcp://127.0.0.1:8786", False),
        ("tcp://localhost:8786", False),
        ("tcp://[::1]:8786", False),
        ("tls://10.1.2.3:8786", False),
        ("inproc://10.1.2.3/123/1", False),
    ],
)
def test_warn_if_exposed_plain_tcp_to_another_machine(
    address: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        warn_if_exposed(Config(scheduler=address))
    expected = [
        f"warning: the connection to {address} is unauthenticated and unencrypted; use a "
        "tls:// address (--tls-ca-file, --tls-cert, --tls-key) to leave this machine safely"
    ]
    assert caplog.messages == (expected if warned else [])


def test_scheduler_tls_options_checked_before_connecting(
    small_csv: Path, tmp_path: Path, capsys
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    base = [str(small_csv), "-o", str(tmp_path / "out")]
    cases = [
        (["--tls-ca-file", str(ca)], "error: --tls-ca-file: only for a tls:// scheduler, got none"),
        (
            ["--scheduler", "tcp://127.0.0.1:9", "--tls-cert", str(ca)],
            "error: --tls-cert: only for a tls:// scheduler, got tcp://127.0.0.1:9",
        ),
        (
            ["--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", str(tmp_path / "x.pem")],
            f"error: --tls-ca-file {tmp_path / 'x.pem'}: no such file",
        ),
        (
            ["--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", str(ca)],
            "error: tls://127.0.0.1:9: TLS needs a CA file and a client certificate: "
            "--tls-ca-file and --tls-cert (and --tls-key), or distributed.comm.tls.ca-file and "
            "distributed.comm.tls.client.cert in Dask's configuration",
        ),
        (
            ["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0"],
            "error: --connect-timeout must be above 0 seconds, got 0.0",
        ),
    ]
    for args, message in cases:
        assert main([*base, *args]) == 2
        assert capsys.readouterr().err == message + "\n"


def versions(scheduler: dict, *workers: dict) -> dict:
    """What Client.get_versions returns, for a client at dask 1, numpy 1, genre-pipeline 1."""
    client = {"python": "3.11.7", "dask": "1", "numpy": "1", "genre-pipeline": "1"}
    return {
        "client": {"packages": client},
        "scheduler": {"packages": {**client, **scheduler}},
        "workers": {f"tcp://w{i}:1": {"packages": {**client, **w}} for i, w in enumerate(workers)},
    }


def test_version_mismatches_by_dasks_rule() -> None:
    assert version_mismatches(versions({}, {}, {})) == []
    # the scheduler runs no task: its numpy and our package do not matter, its dask does
    assert version_mismatches(versions({"numpy": "2", "genre-pipeline": None}, {})) == []
    assert version_mismatches(versions({"dask": "2"}, {})) == [
        "dask: client 1, scheduler 2, workers 1"
    ]
    assert version_mismatches(versions({}, {"numpy": "2"}, {"genre-pipeline": None})) == [
        "numpy: client 1, workers 1/2",
        "genre-pipeline: client 1, workers 1/missing",
    ]
