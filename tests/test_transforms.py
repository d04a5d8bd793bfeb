"""Each transform on a tiny pandas frame and on the same frame as Dask: equal results."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import arrow_backed, partitionings, tiny

from pipeline import schema
from pipeline.transforms import (
    all_valid,
    drop_duplicate_tracks,
    first_occurrences,
    genre_groups,
    genre_parts,
    invalid_reasons,
    top_tracks,
    typed_values,
)


def test_drop_duplicate_tracks_keeps_first_in_file_order() -> None:
    got = drop_duplicate_tracks(tiny())
    assert list(got["track_id"] + "/" + got["track_genre"]) == [
        "a/jazz",
        "b/jazz",
        "c/jazz",
        "a/rock",
        "d/rock",
        "e/rock",
        "f/pop",
        "g/pop",
    ]
    assert (
        got.loc[got["track_id"].eq("a") & got["track_genre"].eq("jazz"), "popularity"].item() == 50
    )


@pytest.mark.parametrize("nparts", [1, 3, 9])
def test_drop_duplicate_tracks_dask_equals_pandas(nparts: int) -> None:
    df = tiny()
    ddf = dd.from_pandas(df, npartitions=nparts, sort=False)
    dd.assert_eq(drop_duplicate_tracks(ddf), drop_duplicate_tracks(df), check_index=False)


def test_top_tracks_order_rank_and_ties() -> None:
    top = top_tracks(drop_duplicate_tracks(tiny()), n=2).fillna({"artists": "<none>"})
    assert top.to_dict("list") == {
        "track_genre": ["jazz", "jazz", "pop", "pop", "rock", "rock"],
        "rank": [1, 2, 1, 2, 1, 2],
        "track_id": ["b", "c", "g", "f", "e", "a"],  # jazz: b and c tie at 70, b first by id
        "track_name": ["name"] * 6,
        "artists": ["X", "<none>", "Ü", "Ü", "Q, R", "X;Y"],
        "popularity": [70, 70, 100, 0, 99, 10],
    }


@pytest.mark.parametrize("n", [1, 2, 10])
def test_top_tracks_dask_equals_pandas(n: int) -> None:
    df = drop_duplicate_tracks(tiny())
    for ddf in partitionings(df):
        dd.assert_eq(top_tracks(ddf, n).compute(), top_tracks(df, n))


def test_top_tracks_same_on_pyarrow_backed_columns() -> None:
    """The reader's frames hold pyarrow-backed columns: same answers, same output dtypes."""
    df = drop_duplicate_tracks(tiny())
    pd.testing.assert_frame_equal(top_tracks(arrow_backed(df), 2), top_tracks(df, 2))


def test_first_occurrences_marks_the_first_of_each_value() -> None:
    values = pa.chunked_array([["a", "b", "a"], ["c", "b", "a"]])
    assert first_occurrences(values).tolist() == [True, True, False, True, False, False]
    assert first_occurrences(pa.array([], pa.string())).tolist() == []


@pytest.mark.parametrize("interleaved", [True, False])
def test_genre_parts_keep_row_order_within_each_genre(interleaved: bool) -> None:
    df = tiny().iloc[[0, 4, 1, 7, 2, 5, 3, 8, 6] if interleaved else slice(None)]
    table = pa.Table.from_pandas(df, preserve_index=False)
    ordered, runs = next(genre_parts(table))  # one part by default
    assert [genre for genre, *_ in runs] == ["jazz", "pop", "rock"]
    for genre, start, rows in runs:
        want = df[df["track_genre"] == genre]["track_id"].tolist()
        assert ordered.slice(start, rows)["track_id"].to_pylist() == want
    assert (ordered is table) is not interleaved  # rows of a genre together: no copy
    groups = dict(genre_groups(table))
    assert sum(t.num_rows for t in groups.values()) == len(df)
    assert list(genre_parts(table.slice(0, 0))) == []


@pytest.mark.parametrize("part_rows", [1, 3, 4, 100])
def test_genre_parts_hold_whole_genres_and_the_rows_of_one_sort(part_rows: int) -> None:
    df = tiny().iloc[[0, 4, 1, 7, 2, 5, 3, 8, 6]]
    table = pa.Table.from_pandas(df, preserve_index=False)
    whole, runs = next(genre_parts(table))
    want = {g: whole.slice(start, n) for g, start, n in runs}
    got = {}
    for part, part_runs in genre_parts(table, part_rows=part_rows):
        assert part.num_rows == sum(n for _, _, n in part_runs)
        assert part.num_rows <= part_rows or len(part_runs) == 1  # one genre may exceed it
        got |= {g: part.slice(start, n) for g, start, n in part_runs}
    assert list(got) != [] and sorted(got) == sorted(want)
    assert all(got[g].equals(want[g]) for g in want)


def test_all_valid_gate_agrees_with_invalid_reasons() -> None:
    df = tiny()
    assert all_valid(pa.Table.from_pandas(df)) and invalid_reasons(df).isna().all()
    for col, value in [("popularity", 101), ("danceability", float("nan")), ("key", -2)]:
        bad = df.astype({col: "float64"})
        bad.loc[4, col] = value
        assert not all_valid(pa.Table.from_pandas(bad))
        assert invalid_reasons(bad).notna().sum() == 1


def test_invalid_reasons_name_column_and_value() -> None:
    df = tiny()
    df["popularity"] = df["popularity"].astype("float64")
    df.loc[0, "popularity"] = 150
    df.loc[1, "track_id"] = None
    df.loc[2, "danceability"] = np.nan
    reasons = invalid_reasons(df)
    assert reasons[0] == "popularity out of range 0..100: '150.0'"
    assert reasons[1] == "missing track_id"
    assert reasons[2] == "missing danceability"
    assert reasons[3:].isna().all()


def test_typed_values_rejects_unparseable_numbers() -> None:
    raw = pd.DataFrame({c: ["1"] * 3 for c in schema.NAMES}, dtype="object")
    raw["explicit"] = ["True", "false", "yes"]
    raw["tempo"] = ["120.5", "abc", ""]
    raw["popularity"] = ["7", "8", "9.5"]
    raw["reason"] = pd.Series([pd.NA] * 3, dtype="object")
    typed, reasons = typed_values(raw)
    assert typed["tempo"].tolist()[0] == 120.5
    assert reasons.tolist() == [
        pd.NA,
        "tempo is not a valid float: 'abc'",
        "popularity is not a valid int: '9.5'",
    ]
    assert typed["explicit"].tolist()[:2] == [True, False]
