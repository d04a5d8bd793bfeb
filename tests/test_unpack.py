"""Compressed inputs: every format gives the outputs, rejected rows and line numbers of the
plain file; a damaged archive is exit 2 with nothing published."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pytest
from conftest import CSVS, FILES, track_row, write_csv
from isal import igzip

from pipeline import unpack
from pipeline.read import read_tracks
from pipeline.run import main


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--dashboard-address", "127.0.0.1:0", "-q"])


def compress(src: Path, kind: str, target: Path) -> Path:
    data = src.read_bytes()
    if kind == "zip":
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("dataset.csv", data)
    elif kind == "zstd":
        with pa.CompressedOutputStream(str(target), "zstd") as out:
            out.write(data)
    else:
        target.write_bytes({"gzip": gzip, "bzip2": bz2, "xz": lzma}[kind].compress(data))
    return target


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A file with rejected rows in later blocks, and the outputs of its plain run."""
    tmp = tmp_path_factory.mktemp("plain")
    lines = [track_row(i, f"t{i % 700}", f"g{i % 5}", i % 90) for i in range(3000)]
    lines[2500] = lines[2500].replace(",200000,", ",-1,")
    lines[2900] += ",surplus"
    src = write_csv(tmp / "tracks.csv", lines)
    assert run_cli(src, "-o", tmp / "out", "--blocksize", "16KiB") == 0
    return src, tmp / "out"


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("gzip", "tracks.csv.gz"),
        ("bzip2", "tracks.csv.bz2"),
        ("xz", "tracks.csv.xz"),
        ("zstd", "tracks.csv.zst"),
        ("zip", "tracks.zip"),
        ("gzip", "tracks.csv"),  # named like a plain file: its first bytes decide
    ],
)
def test_compressed_input_gives_the_plain_outputs(
    plain: tuple[Path, Path], tmp_path: Path, kind: str, name: str
) -> None:
    src, want = plain
    packed = compress(src, kind, tmp_path / name)
    assert unpack.compression(str(packed)) == kind
    out = tmp_path / "out"
    assert run_cli(packed, "-o", out, "--blocksize", "16KiB") == 0
    for output in CSVS[:2]:
        assert (out / output).read_bytes() == (want / output).read_bytes()
    rejected = pd.read_csv(out / "rejected_rows.csv")
    label = f"{packed}/dataset.csv" if kind == "zip" else str(packed)
    assert rejected["file"].tolist() == [label, label]
    assert rejected["line"].tolist() == [2502, 2902]
    assert rejected.drop(columns="file").equals(
        pd.read_csv(want / "rejected_rows.csv").drop(columns="file")
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"] == [str(packed)] and manifest["partitions"] > 10
    assert not list(tmp_path.glob(".out.staging-*"))
    assert {p.name for p in out.iterdir()} == FILES  # the plain copy is not published


def test_zip_of_several_csvs_reads_them_all(plain: tuple[Path, Path], tmp_path: Path) -> None:
    src, want = plain
    text = src.read_text().splitlines(keepends=True)
    with zipfile.ZipFile(tmp_path / "parts.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("b.csv", "".join([text[0], *text[1501:]]))
        archive.writestr("a.csv", "".join(text[:1501]))
        archive.writestr("README.txt", "not read")
    out = tmp_path / "out"
    assert run_cli(tmp_path / "parts.zip", "-o", out) == 0
    for output in CSVS[:2]:
        assert (out / output).read_bytes() == (want / output).read_bytes()
    rejected = pd.read_csv(out / "rejected_rows.csv")
    assert rejected[["file", "line"]].values.tolist() == [
        [f"{tmp_path}/parts.zip/b.csv", 1002],
        [f"{tmp_path}/parts.zip/b.csv", 1402],
    ]


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd", "zip"])
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_archive_exit_2_previous_output_intact(
    plain: tuple[Path, Path], tmp_path: Path, capsys, kind: str, damage: str
) -> None:
    src, _ = plain
    packed = compress(src, kind, tmp_path / f"tracks.{kind}")
    data = packed.read_bytes()
    middle = len(data) // 2
    packed.write_bytes(
        data[:middle] if damage == "truncated" else data[:middle] + bytes(64) + data[middle + 64 :]
    )
    out = tmp_path / "out"
    assert run_cli(src, "-o", out) == 0
    before = (out / "manifest.json").read_bytes()
    capsys.readouterr()
    assert run_cli(packed, "-o", out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {packed}") and err.count("\n") == 1, err
    assert f"a truncated or corrupt {kind} file" in err
    assert err.endswith("; download or compress it again\n")
    assert (out / "manifest.json").read_bytes() == before
    assert not list(tmp_path.glob(".out.staging-*"))


def test_zip_without_a_csv_exit_2(tmp_path: Path, capsys) -> None:
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("a.txt", "x")
        archive.writestr("b.txt", "y")
    assert run_cli(tmp_path / "notes.zip", "-o", tmp_path / "out") == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path}/notes.zip: a zip file with no CSV file in it (2 other files); "
        "pass a zip holding the tracks CSV\n"
    )


def test_compressed_file_that_is_not_a_tracks_csv_names_it(tmp_path: Path, capsys) -> None:
    packed = tmp_path / "other.csv.gz"
    packed.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert run_cli(packed, "-o", tmp_path / "out") == 2
    assert capsys.readouterr().err.startswith(f"error: {packed}:1: missing required columns")


def test_unpack_streams_in_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    """The decompressed copy is written a chunk at a time: the task never holds the file."""
    src = write_csv(
        tmp_path / "t.csv", [track_row(i, "x", "g", 1) for i in range(40_000)]
    )  # 4.4 MB
    packed = compress(src, "gzip", tmp_path / "t.csv.gz")
    reads: list[int] = []
    original = igzip.GzipFile.read

    def spy(self, size=-1):
        reads.append(size)
        return original(self, size)

    monkeypatch.setattr(igzip.GzipFile, "read", spy)
    target = unpack.unpack(unpack.Packed(str(packed), "gzip"), str(tmp_path / "plain.csv"))
    assert Path(target).read_bytes() == src.read_bytes()
    assert len(reads) > 1 and max(reads) == unpack.CHUNK


def test_read_tracks_reads_a_compressed_file(plain: tuple[Path, Path], tmp_path: Path) -> None:
    """The notebook API takes the same inputs as the CLI."""
    src, _ = plain
    packed = compress(src, "xz", tmp_path / "tracks.csv.xz")
    tracks = read_tracks(str(packed))
    clean, rejected = dask.compute(tracks.clean, tracks.rejected, scheduler="sync")
    want = read_tracks(str(src))
    dd.assert_eq(clean, want.clean.compute(scheduler="sync"), check_index=False)
    assert rejected["file"].tolist() == [str(packed)] * 2
    assert rejected["line"].tolist() == [2502, 2902]


def test_compressed_file_with_line_breaks_in_values(tmp_path: Path, capsys) -> None:
    """Decompressed, then cut at record ends like any such file; messages name the archive."""
    lines = [track_row(i, f"t{i}", "jazz", i % 50) for i in range(400)]
    lines = [r.replace(",Song,", ',"So\nng",') for r in lines]
    plain = write_csv(tmp_path / "m.csv", lines)
    assert run_cli(plain, "-o", tmp_path / "plain", "--blocksize", "2KiB") == 0
    packed = compress(plain, "gzip", tmp_path / "m.csv.gz")
    capsys.readouterr()
    assert run_cli(packed, "-o", tmp_path / "out", "--blocksize", "2KiB") == 0
    assert f"{packed} has line breaks inside quoted values" in capsys.readouterr().err
    for output in CSVS:
        assert (tmp_path / "out" / output).read_bytes() == (
            tmp_path / "plain" / output
        ).read_bytes()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["partitions"] > 10
