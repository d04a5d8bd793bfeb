"""The reader: blocks -> Dask DataFrames of clean and rejected rows (``read_tracks``)."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from conftest import track_row, write_csv

from pipeline import read, schema
from pipeline.blocks import plan_input
from pipeline.config import Config
from pipeline.read import read_tracks


def plan_of(path: Path, blocksize: int = 1 << 20):
    return plan_input([str(path)], Config(blocksize=blocksize), 1)


def pandas_rows(path: Path) -> pd.DataFrame:
    """The file's rows read by pandas with the schema's dtypes (every row valid here)."""
    df = pd.read_csv(path, usecols=list(schema.NAMES), dtype=schema.PANDAS_DTYPES)
    return df[list(schema.NAMES)]


def test_read_tracks_clean_rows_equal_pandas_one_partition_per_block(small_csv: Path) -> None:
    plan = plan_of(small_csv, 256 * 1024)
    tracks = read_tracks(plan)
    assert tracks.clean.npartitions == len(plan.blocks) > 4
    assert all(isinstance(t, pd.ArrowDtype) for t in tracks.clean.dtypes)  # pyarrow-backed
    dd.assert_eq(tracks.clean, pandas_rows(small_csv), check_index=False, check_dtype=False)
    assert len(tracks.rejected.compute()) == 0


def test_read_tracks_from_a_path_plans_for_this_machine(small_csv: Path) -> None:
    tracks = read_tracks(str(small_csv))
    assert tracks.clean.npartitions == len(tracks.plan.blocks)
    assert len(tracks.clean) == 12_000


def test_read_tracks_computes_clean_and_rejected_from_one_parse_per_block(
    tmp_path: Path, monkeypatch
) -> None:
    lines = [track_row(i, f"t{i}", "jazz", 5) for i in range(300)]
    lines[250] = lines[250].replace(",5,200000,", ",500,200000,")
    plan = plan_of(write_csv(tmp_path / "t.csv", lines), 2048)
    calls: list[int] = []
    real = read.parse_columns
    monkeypatch.setattr(
        read, "parse_columns", lambda d, b, t: calls.append(b.ordinal) or real(d, b, t)
    )
    tracks = read_tracks(plan)
    clean, rejected = dask.compute(tracks.clean, tracks.rejected, scheduler="sync")
    assert sorted(calls) == list(range(len(plan.blocks)))
    assert len(clean) == 299 and rejected["line"].tolist() == [252]


def test_read_tracks_rejected_rows_carry_file_line_reason_and_raw_fields(tmp_path: Path) -> None:
    lines = [track_row(i, f"t{i}", "jazz", 5) for i in range(300)]
    lines[10] = lines[10].replace(",5,200000,", ",500,200000,")
    lines[250] = lines[250].replace(",0.5,", ",half,", 1)
    lines[260] += ",surplus"
    src = write_csv(tmp_path / "bad.csv", lines)
    rejected = read_tracks(plan_of(src, 2048)).rejected.compute()
    assert list(rejected.columns) == list(read.REJECT_COLUMNS)
    assert rejected["line"].tolist() == [12, 252, 262]
    assert rejected["reason"].tolist() == [
        "popularity out of range 0..100: '500'",
        "danceability is not a valid float: 'half'",
        "expected 21 fields, found 22",
    ]
    assert rejected["danceability"].tolist() == ["0.5", "half", "0.5"]
    assert rejected["extra"].tolist()[2] == "surplus"
    assert set(rejected["file"]) == {str(src)}


def test_read_tracks_quoted_fields_crlf_and_empty_names(tmp_path: Path) -> None:
    lines = [
        track_row(0, "a", "jazz", 1, artists='Crosby, Stills & Nash;The ""Band""'),
        "1,b,,,,2,200000,False,0.5,0.5,1,-5.0,1,0.1,0.1,0.0,0.1,0.5,120.0,4,jazz",
        track_row(2, "c", "jazz", 3, artists="Beyoncé;日本"),
    ]
    src = write_csv(tmp_path / "q.csv", lines, newline="\r\n")  # saved on Windows
    clean = read_tracks(plan_of(src)).clean.compute()
    artists = clean["artists"].fillna("<empty>").tolist()
    assert artists == ['Crosby, Stills & Nash;The "Band"', "<empty>", "Beyoncé;日本"]
    assert clean["track_name"].isna().tolist() == [False, True, False]


def test_read_tracks_some_columns_parses_and_checks_only_those(tmp_path: Path) -> None:
    lines = [track_row(i, f"t{i}", "jazz", 5) for i in range(20)]
    lines[3] = lines[3].replace(",0.5,", ",half,", 1)  # danceability: not read below
    src = write_csv(tmp_path / "t.csv", lines)
    tracks = read_tracks(plan_of(src), names=["track_genre", "popularity"])
    clean = tracks.clean.compute()
    assert list(clean.columns) == ["track_genre", "popularity"] and len(clean) == 20
    assert len(tracks.rejected.compute()) == 0


def test_read_tracks_clean_frame_takes_any_groupby_of_ones_own(small_csv: Path) -> None:
    """What a notebook user does: their own groupby on the clean rows, no file read again."""
    clean = read_tracks(plan_of(small_csv, 256 * 1024)).clean
    got = clean.groupby("artists")["popularity"].mean().compute().sort_index()
    want = pandas_rows(small_csv).groupby("artists")["popularity"].mean().sort_index()
    pd.testing.assert_series_equal(got.astype("float64"), want, check_index_type=False)


def test_read_tracks_unparseable_file_is_one_input_error(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "latin1.csv", [track_row(0, "a", "jazz", 5, artists="café")])
    src.write_bytes(src.read_bytes().replace("é".encode(), "é".encode("latin-1")))
    with pytest.raises(read.BadBytes, match="is not valid UTF-8 text"):
        read_tracks(plan_of(src)).clean.compute(scheduler="sync")
