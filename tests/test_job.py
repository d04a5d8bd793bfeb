"""The run's task graph: blocks, cross-block duplicates, line numbers, one parse per block."""

from __future__ import annotations

from pathlib import Path

import dask
import pandas as pd
import pytest
from conftest import assert_frames_match, reference

from pipeline import io, job, schema, transforms
from pipeline.schema import FILE_COLUMNS

HEADER = ",".join(FILE_COLUMNS)


def row(i: int, track: str, genre: str, pop: int, artists: str = "A") -> str:
    return (
        f'{i},{track},"{artists}",Album,Song,{pop},200000,{i % 2 == 0},0.5,0.{i % 10},1,-5.0,'
        f"1,0.1,0.1,0.0,0.1,0.5,120.0,4,{genre}"
    )


def run_graph(path: Path, stage: Path, blocksize: int, top: int = 3) -> job.JobResult:
    blocks = io.plan_blocks(io.expand_input(str(path)), blocksize)
    computed = dask.compute(job.build(blocks, top, str(stage)), scheduler="sync")[0]
    return job.collect(blocks, computed)


def test_job_far_duplicates_removed_everywhere(tmp_path: Path) -> None:
    """Twins 60 lines apart with 1 KiB blocks: later copies leave the Parquet and the summary."""
    lines = [
        row(i, f"t{i % 60}", ["jazz", "rock"][i // 60 % 2], (i * 37) % 101) for i in range(240)
    ]
    lines[200] = row(200, "t5", "rock", 100, artists="Only, Here")  # a twin with other values
    src = tmp_path / "far.csv"
    src.write_text("\n".join([HEADER, *lines]) + "\n")
    result = run_graph(src, tmp_path / "stage", blocksize=1024)
    want_summary, want_top = reference(src, top=3)
    assert_frames_match(result.summary, want_summary)
    assert_frames_match(result.top, want_top)
    tracks = pd.read_parquet(tmp_path / "stage" / "tracks")
    assert len(tracks) == result.kept == want_summary["tracks"].sum() == 120
    assert result.duplicates == 120 and result.rows == 240
    assert "Only, Here" not in set(tracks["artists"])


def test_job_rejected_lines_are_file_lines_across_blocks(tmp_path: Path) -> None:
    lines = [row(i, f"t{i}", "jazz", 5) for i in range(300)]
    lines[10] = lines[10].replace(",5,200000,", ",500,200000,")
    lines[250] = lines[250].replace(",0.5,", ",half,", 1)
    src = tmp_path / "bad.csv"
    src.write_text("\n".join([HEADER, *lines]) + "\n")
    result = run_graph(src, tmp_path / "stage", blocksize=2048)
    assert result.rejected["line"].tolist() == [12, 252]
    assert result.rejected["reason"].tolist() == [
        "popularity out of range 0..100: '500'",
        "danceability is not a valid float: 'half'",
    ]
    assert result.rejected["danceability"].tolist() == ["0.5", "half"]
    assert result.kept == 298


def test_job_quoted_fields_and_empty_names(tmp_path: Path) -> None:
    lines = [
        row(0, "a", "jazz", 1, artists='Crosby, Stills & Nash;The ""Band""'),
        "1,b,,,,2,200000,False,0.5,0.5,1,-5.0,1,0.1,0.1,0.0,0.1,0.5,120.0,4,jazz",
        row(2, "c", "jazz", 3, artists="Beyoncé;日本"),
    ]
    src = tmp_path / "q.csv"
    src.write_text("\r\n".join([HEADER, *lines]) + "\r\n")  # saved on Windows
    result = run_graph(src, tmp_path / "stage", blocksize=1 << 20)
    assert result.kept == 3 and result.rejected.empty
    assert result.top["artists"].fillna("").tolist() == [
        "Beyoncé;日本",
        "",
        'Crosby, Stills & Nash;The "Band"',
    ]
    assert result.summary["unique_artists"].tolist() == [2]


def test_summary_graph_equals_pandas_on_every_row(small_csv: Path) -> None:
    """The summary-only graph (benchmark workload `summary`) reads every row as it is."""
    blocks = io.plan_blocks([str(small_csv)], 256 * 1024)
    got = dask.compute(job.build_summary(blocks), scheduler="sync")[0]
    columns = list(schema.SUMMARY_INPUT)
    dtypes = {c: schema.PANDAS_DTYPES[c] for c in columns}
    want = transforms.genre_summary(pd.read_csv(small_csv, usecols=columns, dtype=dtypes))
    assert len(blocks) > 4
    assert_frames_match(got, want)


def test_summary_graph_refuses_rows_that_do_not_parse(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("\n".join([HEADER, row(0, "t0", "jazz", 5), row(1, "t1", "jazz", "x")]) + "\n")
    with pytest.raises(io.InputError, match="some rows do not parse"):
        dask.compute(job.build_summary(io.plan_blocks([str(src)], 1 << 20)), scheduler="sync")


@pytest.mark.parametrize("blocksize", [1024, 1031, 4096, 1 << 20])
def test_mapped_blocks_are_fsspec_blocks(tmp_path: Path, blocksize: int) -> None:
    """Blocks of a local file are memory-mapped; they must hold the lines fsspec's read_block
    gives (a line after the first line end at or after the offset, to the first line end at
    or after the end), cover the file once, and survive lines longer than a block."""
    from fsspec.utils import read_block

    lines = [HEADER] + [row(i, f"t{i}", "jazz", i % 100) for i in range(300)]
    lines[40] = lines[40].replace("Album", "A" * 3000)  # longer than the smallest blocks
    src = tmp_path / "tracks.csv"
    src.write_text("\n".join(lines) + "\n")
    blocks = io.plan_blocks([str(src)], blocksize)
    got = []
    for block in blocks:
        with io.block_data(block) as data:
            got.append(bytes(data))
    with open(src, "rb") as f:
        want = [read_block(f, b.offset, b.length, delimiter=b"\n") for b in blocks]
    assert got == want
    assert b"".join(got) == src.read_bytes()
    assert sum(io.count_lines(memoryview(g)) for g in got) == len(lines)


def test_a_file_that_shrank_after_planning_is_an_input_error(tmp_path: Path) -> None:
    src = tmp_path / "tracks.csv"
    src.write_text("\n".join([HEADER] + [row(i, f"t{i}", "jazz", 5) for i in range(100)]) + "\n")
    last = io.plan_blocks([str(src)], 1024)[-1]
    src.write_text(HEADER + "\n")
    shrank = "the file shrank while it was read; run again"
    with pytest.raises(io.InputError, match=shrank), io.block_data(last):
        pass
