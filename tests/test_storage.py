"""Inputs and outputs as fsspec URLs: memory:// in-process, and s3:// against a real S3 API on
loopback (moto's server mode) with s3fs, compared with local runs of the same CSV."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pytest
import s3fs
from conftest import CSVS, FILES, assert_frames_match, popen_run, reference
from moto.server import ThreadedMotoServer

from pipeline import publish, read
from pipeline.blocks import Block
from pipeline.run import main, make_config, parse_args

BLOCKS = ("--blocksize", "256KiB")  # several partitions, the same ones in every run


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--dashboard-address", "127.0.0.1:0", "-q"])


def names(fs: fsspec.AbstractFileSystem, prefix: str) -> set[str]:
    fs.invalidate_cache()  # another process may have written since this client listed
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False)}


def staging_left(fs: fsspec.AbstractFileSystem) -> list[str]:
    return [name for name in names(fs, "bkt") if ".staging-" in name]


def sorted_tracks(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({"track_genre": str})
    return df.sort_values(["track_genre", "track_id"], ignore_index=True)


@pytest.fixture(scope="module")
def with_rejects(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small CSV with two bad rows: too few fields, and a popularity out of range."""
    with small_csv.open(newline="") as f:
        rows = list(csv.reader(f))
    rows[10] = rows[10][:3]
    rows[20][rows[0].index("popularity")] = "101"
    path = tmp_path_factory.mktemp("data") / "with_rejects.csv"
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[s3fs.S3FileSystem, tuple[str, str]]]:
    """A bucket ``bkt`` on moto's S3 server on 127.0.0.1 (a free port), an s3fs client of it and
    the CLI option naming its endpoint; dummy credentials in the environment, inherited by the
    CLI subprocesses."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            fs = s3fs.S3FileSystem(endpoint_url=endpoint)
            fs.mkdir("bkt")
            yield fs, ("--storage-option", f"endpoint_url={endpoint}")
        finally:
            server.stop()


@pytest.mark.slow
def test_storage_s3_in_and_out_equal_a_local_run(s3, with_rejects: Path, tmp_path: Path) -> None:
    """The CLI with worker processes: the endpoint and credentials reach them only inside the
    tasks. Every output read back from the store equals a local run's; no secret is written."""
    fs, endpoint = s3
    fs.put_file(str(with_rejects), "bkt/in.csv")
    local = tmp_path / "local"
    assert run_cli(with_rejects, "-o", local, *BLOCKS) == 0
    proc = popen_run(
        "s3://bkt/in.csv",
        "-o",
        "s3://bkt/out",
        *BLOCKS,
        "--processes",
        *endpoint,
        *("--storage-option", "key=testing", "--storage-option", "secret=do-not-write-me"),
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert names(fs, "bkt/out") == FILES
    assert not staging_left(fs)
    for name in ("genre_summary.csv", "top_tracks.csv"):
        assert fs.cat(f"bkt/out/{name}") == (local / name).read_bytes(), name
    rejected = pd.read_csv(fs.open("bkt/out/rejected_rows.csv"))
    assert set(rejected.pop("file")) == {"s3://bkt/in.csv"}
    want = pd.read_csv(local / "rejected_rows.csv").drop(columns="file")
    assert len(want) == 2
    assert_frames_match(rejected, want)
    assert_frames_match(
        sorted_tracks(pd.read_parquet("bkt/out/tracks", filesystem=fs)),
        sorted_tracks(pd.read_parquet(local / "tracks")),
    )
    text = fs.cat("bkt/out/manifest.json")
    manifest, want = json.loads(text), json.loads((local / "manifest.json").read_text())
    for key in ("rows_read", "rows_kept", "rows_rejected", "duplicates_dropped", "partitions"):
        assert manifest[key] == want[key], key
    assert manifest["input"] == ["s3://bkt/in.csv"] and manifest["cluster"].startswith("2 workers")
    assert manifest["config"]["storage_options"] == "['endpoint_url', 'key', 'secret']"
    assert b"do-not-write-me" not in text
    assert fs.cat("bkt/out/_SUCCESS") == b""


@pytest.mark.slow
def test_storage_s3_compressed_input_equals_a_local_run(
    s3, with_rejects: Path, tmp_path: Path
) -> None:
    """A .csv.gz on S3: decompressed by a task into the staging prefix on S3, read in blocks
    from there; the outputs and rejected rows of the local plain file, the .gz named."""
    fs, endpoint = s3
    fs.pipe("bkt/in.csv.gz", gzip.compress(with_rejects.read_bytes()))
    local = tmp_path / "local"
    assert run_cli(with_rejects, "-o", local, *BLOCKS) == 0
    assert run_cli("s3://bkt/in.csv.gz", "-o", "s3://bkt/gz-out", *BLOCKS, *endpoint) == 0
    for name in ("genre_summary.csv", "top_tracks.csv"):
        assert fs.cat(f"bkt/gz-out/{name}") == (local / name).read_bytes(), name
    rejected = pd.read_csv(fs.open("bkt/gz-out/rejected_rows.csv"))
    assert set(rejected.pop("file")) == {"s3://bkt/in.csv.gz"}
    assert_frames_match(rejected, pd.read_csv(local / "rejected_rows.csv").drop(columns="file"))
    assert not staging_left(fs)


def test_storage_s3_glob_of_several_files(s3, small_csv: Path) -> None:
    fs, endpoint = s3
    lines = small_csv.read_bytes().splitlines(keepends=True)
    fs.pipe(
        {
            "bkt/parts/part-1.csv": b"".join(lines[:7000]),
            "bkt/parts/part-2.csv": lines[0] + b"".join(lines[7000:]),
        }
    )
    out = "s3://bkt/from-parts"
    assert run_cli("s3://bkt/parts/*.csv", "-o", out, *endpoint) == 0
    want_summary, want_top = reference(small_csv)
    assert_frames_match(pd.read_csv(fs.open(f"{out}/genre_summary.csv")), want_summary)
    assert_frames_match(pd.read_csv(fs.open(f"{out}/top_tracks.csv")), want_top)
    assert json.loads(fs.cat(f"{out}/manifest.json"))["input"] == [
        "s3://bkt/parts/part-1.csv",
        "s3://bkt/parts/part-2.csv",
    ]


@pytest.mark.slow
def test_storage_s3_rerun_replaces_the_output_whole(s3, small_csv: Path) -> None:
    fs, endpoint = s3
    fs.put_file(str(small_csv), "bkt/small.csv")
    args = ("s3://bkt/small.csv", "-o", "s3://bkt/rerun", *endpoint)
    assert run_cli(*args, "--top", "3") == 0
    fs.pipe_file("bkt/rerun/stray.txt", b"from an older run")
    fs.pipe_file("bkt/rerun/tracks/track_genre=gone/part-99999.parquet", b"not parquet")
    assert run_cli(*args, "--top", "5") == 0
    assert names(fs, "bkt/rerun") == FILES
    want_summary, want_top = reference(small_csv, top=5)
    assert_frames_match(pd.read_csv(fs.open("bkt/rerun/top_tracks.csv")), want_top)
    tracks = pd.read_parquet("bkt/rerun/tracks", filesystem=fs)  # fails on the stray file
    assert len(tracks) == want_summary["tracks"].sum()
    assert sorted(tracks["track_genre"].astype(str).unique()) == list(want_summary["track_genre"])


@pytest.mark.slow
def test_storage_s3_failed_run_leaves_previous_output_and_no_staging(
    s3, small_csv: Path, monkeypatch, capsys
) -> None:
    fs, endpoint = s3
    args = (small_csv, "-o", "s3://bkt/kept", *endpoint)
    assert run_cli(*args) == 0
    before = {p: fs.cat(p) for p in fs.find("bkt/kept")}
    real = read.parse_columns

    def broken(data: memoryview, block: Block, *rest):
        if block.ordinal == 3:
            raise OSError("disk on fire")
        return real(data, block, *rest)

    monkeypatch.setattr(read, "parse_columns", broken)
    assert run_cli(*args, *BLOCKS) == 1
    assert "OSError: disk on fire" in capsys.readouterr().err
    fs.invalidate_cache()
    assert {p: fs.cat(p) for p in fs.find("bkt/kept")} == before
    assert not staging_left(fs)


@pytest.mark.slow
def test_storage_s3_refuses_a_foreign_prefix_and_a_bucket(s3, small_csv: Path, capsys) -> None:
    fs, endpoint = s3
    fs.pipe_file("bkt/home/thesis.tex", b"precious")
    assert run_cli(small_csv, "-o", "s3://bkt/home", *endpoint) == 2
    assert "s3://bkt/home: exists and is not a genre-pipeline output" in capsys.readouterr().err
    assert fs.find("bkt/home") == ["bkt/home/thesis.tex"]
    assert fs.cat("bkt/home/thesis.tex") == b"precious"
    assert run_cli(small_csv, "-o", "s3://bkt", *endpoint) == 2
    assert "s3://bkt: is a bucket; choose a prefix in it" in capsys.readouterr().err


def test_storage_memory_urls_equal_a_local_run(small_csv: Path, tmp_path: Path) -> None:
    """memory:// in and out, in-process (memory:// is per process: the threads cluster shares
    it); a rerun replaces the output."""
    fs = fsspec.filesystem("memory")
    root = tmp_path.name
    fs.pipe_file(f"/{root}/in.csv", small_csv.read_bytes())
    try:
        assert run_cli(small_csv, "-o", tmp_path / "local", *BLOCKS) == 0
        args = (f"memory://{root}/in.csv", "-o", f"memory://{root}/out", *BLOCKS)
        assert run_cli(*args) == 0
        fs.pipe_file(f"/{root}/out/stray.txt", b"from the first run")
        assert run_cli(*args) == 0
        assert names(fs, f"/{root}") == {"in.csv", "out"}
        assert names(fs, f"/{root}/out") == FILES
        for name in CSVS:
            assert fs.cat(f"/{root}/out/{name}") == (tmp_path / "local" / name).read_bytes()
        assert_frames_match(
            sorted_tracks(pd.read_parquet(f"/{root}/out/tracks", filesystem=fs)),
            sorted_tracks(pd.read_parquet(tmp_path / "local" / "tracks")),
        )
    finally:
        fs.rm(f"/{root}", recursive=True)


def test_storage_publish_by_copying_order(tmp_path: Path, monkeypatch) -> None:
    """Without renames: the old output loses its _SUCCESS before anything else changes, its
    other objects go before the new ones come, and the new _SUCCESS comes last; a manifest.json
    is there throughout (a publish cut short still counts as a genre-pipeline output)."""
    fs = fsspec.filesystem("memory")
    out, stage = f"/{tmp_path.name}/out", f"/{tmp_path.name}/.out.staging-1"
    fs.pipe(
        {
            f"{out}/_SUCCESS": b"",
            f"{out}/manifest.json": b"old",
            f"{out}/old.csv": b"old",
            f"{stage}/manifest.json": b"new",
            f"{stage}/a.csv": b"new",
            f"{stage}/tracks/g=x/p.parquet": b"new",
            f"{stage}/_SUCCESS": b"",
        }
    )
    seen: list[tuple[str, list[str]]] = []
    rm_file, copy = fs.rm_file, fs.copy
    monkeypatch.setattr(fs, "rm_file", lambda p: seen.append(("rm", [p])) or rm_file(p))
    monkeypatch.setattr(fs, "copy", lambda a, b: seen.append(("copy", sorted(b))) or copy(a, b))
    try:
        publish.publish(f"memory://{stage}", f"memory://{out}")
        assert seen[:5] == [
            ("rm", [f"{out}/_SUCCESS"]),
            ("rm", [f"{out}/old.csv"]),
            ("copy", [f"{out}/manifest.json"]),
            ("copy", [f"{out}/a.csv", f"{out}/tracks/g=x/p.parquet"]),
            ("copy", [f"{out}/_SUCCESS"]),
        ]
        assert {op for op, _ in seen[5:]} == {"rm"}  # then the staging prefix goes
        files = ("_SUCCESS", "a.csv", "manifest.json", "tracks/g=x/p.parquet")
        assert fs.find(out) == [f"{out}/{name}" for name in files]
        assert fs.cat(f"{out}/manifest.json") == b"new" and not fs.exists(stage)
    finally:
        fs.rm(f"/{tmp_path.name}", recursive=True)


def test_storage_option_values_are_json_or_text(capsys) -> None:
    pairs = [
        "endpoint_url=http://127.0.0.1:9000",
        "anon=true",
        'client_kwargs={"region_name": "eu-west-1"}',
        'key="123"',
        "max_concurrency=4",
        "secret=",
    ]
    cfg = make_config(parse_args([arg for p in pairs for arg in ("--storage-option", p)]))
    assert cfg.storage_options == {
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": True,
        "client_kwargs": {"region_name": "eu-west-1"},
        "key": "123",
        "max_concurrency": 4,
        "secret": "",
    }
    assert "127.0.0.1:9000" not in repr(cfg)  # the options may hold credentials
    assert run_cli("--storage-option", "anon") == 2
    assert capsys.readouterr().err == "error: --storage-option expects KEY=VALUE, got 'anon'\n"
