"""Each transform on a tiny pandas frame and on the same frame as Dask: equal results."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import schema, transforms
from pipeline.transforms import (
    all_valid,
    drop_duplicate_tracks,
    first_occurrences,
    genre_summary,
    invalid_reasons,
    later_copies,
    merge_summaries,
    summary_partial,
    top_tracks,
    typed_values,
)


def tiny() -> pd.DataFrame:
    """Nine clean rows over three genres; one repeated (track_id, genre) pair; popularity ties."""
    rows = [
        ("a", "X;Y", "jazz", 50, True, 0.5),
        ("b", "X", "jazz", 70, False, 0.1),
        ("a", "Z", "jazz", 90, False, 0.9),  # repeats (a, jazz): dropped, first kept
        ("c", None, "jazz", 70, False, 0.3),  # empty artists: not an artist
        ("a", "X;Y", "rock", 10, True, 0.2),  # same track, other genre: kept
        ("d", "Q, R", "rock", 10, False, 0.4),
        ("e", "Q, R", "rock", 99, True, 0.6),
        ("f", "Ü", "pop", 0, False, 0.7),
        ("g", "Ü", "pop", 100, False, 0.8),
    ]
    df = pd.DataFrame(
        rows,
        columns=["track_id", "artists", "track_genre", "popularity", "explicit", "danceability"],
    )
    for col in schema.NAMES:
        if col not in df:
            kind = schema.BY_NAME[col].kind
            df[col] = "name" if kind == "str" else np.arange(len(df)) % 2
    return df[list(schema.NAMES)].astype(schema.PANDAS_DTYPES)


def partitionings(df: pd.DataFrame) -> list[dd.DataFrame]:
    return [dd.from_pandas(df, npartitions=n, sort=False) for n in (1, 3, len(df))]


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


def test_genre_summary_values() -> None:
    s = genre_summary(drop_duplicate_tracks(tiny())).set_index("track_genre")
    assert list(s.index) == ["jazz", "pop", "rock"]
    assert s.loc["jazz", "tracks"] == 3
    assert s.loc["jazz", "unique_artists"] == 2  # "X;Y" and "X": the field as written; None not
    assert s.loc["rock", "unique_artists"] == 2
    assert s.loc["rock", "explicit_share"] == pytest.approx(2 / 3)
    assert (s.loc["pop", "popularity_min"], s.loc["pop", "popularity_max"]) == (0, 100)
    assert s.loc["jazz", "popularity_mean"] == pytest.approx(190 / 3)
    assert s.loc["jazz", "danceability_mean"] == pytest.approx(0.3)
    assert list(s.reset_index().columns) == list(schema.SUMMARY_COLUMNS)


def test_genre_summary_dask_equals_pandas() -> None:
    df = drop_duplicate_tracks(tiny())
    for ddf in partitionings(df):
        dd.assert_eq(genre_summary(ddf).compute(), genre_summary(df))


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


def test_summary_partials_merge_exactly() -> None:
    df = drop_duplicate_tracks(tiny())
    halves = [summary_partial(df.iloc[:4]), summary_partial(df.iloc[4:])]
    whole = transforms.finalize_summary(merge_summaries(halves))
    pd.testing.assert_frame_equal(whole, genre_summary(df))
    again = transforms.finalize_summary(merge_summaries([*halves, summary_partial(df.iloc[:4])]))
    assert again["unique_artists"].tolist() == whole["unique_artists"].tolist()  # pairs distinct
    assert (again["tracks"] > whole["tracks"]).any()


def test_summary_partial_of_no_rows_is_neutral() -> None:
    df = drop_duplicate_tracks(tiny())
    empty = summary_partial(df.iloc[:0])
    merged = merge_summaries([empty, summary_partial(df), empty])
    pd.testing.assert_frame_equal(transforms.finalize_summary(merged), genre_summary(df))


def test_first_occurrences_equals_drop_duplicate_tracks() -> None:
    df = tiny()
    mask = first_occurrences(pa.Table.from_pandas(df, preserve_index=False))
    pd.testing.assert_frame_equal(df[mask], drop_duplicate_tracks(df))


def test_later_copies_finds_ids_of_earlier_parts_only() -> None:
    def keys(*rows: tuple[str, str | None]) -> pa.Table:
        return pa.table({"track_id": [r[0] for r in rows], "artists": [r[1] for r in rows]})

    parts = [keys(("a", "X"), ("b", "Y")), keys(("c", None), ("d", "Y")), keys(("a", "New"))]
    got, artists = later_copies(parts)
    assert got.to_dict("list") == {"part": [2], "track_id": ["a"]}
    assert artists == 2  # X and Y: a later copy's artists and a missing one do not count
    assert later_copies(parts[:2])[0].empty


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


def test_arrow_summary_partial_equals_pandas() -> None:
    df = drop_duplicate_tracks(tiny())
    table = pa.Table.from_pandas(df, schema=schema.ARROW_SCHEMA, preserve_index=False)
    for rows in (0, 3, len(df)):
        got = transforms.summary_partial_arrow(table.slice(0, rows))
        want = summary_partial(df.iloc[:rows])
        pd.testing.assert_frame_equal(
            transforms.finalize_summary(got), transforms.finalize_summary(want)
        )


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_arrow_top_partial_equals_pandas(n: int) -> None:
    """The histogram pre-filter keeps ties at the n-th popularity and small genres whole."""
    df = drop_duplicate_tracks(tiny())
    table = pa.Table.from_pandas(df, schema=schema.ARROW_SCHEMA, preserve_index=False)
    got = transforms.top_partial_arrow(table, transforms.summary_partial_arrow(table).genres, n)
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), transforms.top_partial(df, n).reset_index(drop=True)
    )
