"""The summary's declaration: every path (pandas, a Dask tree, whole groups, a shuffle) against
plain pandas and Python's median, by genre and by a key with many groups."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import arrow_backed, assert_frames_match, partitionings, summary_reference, tiny

from pipeline import schema
from pipeline.benchmark.choices import BY_STATS, summary_by_groupby
from pipeline.summary import (
    KINDS,
    LARGE_GROUP,
    MERGEABLE,
    SUMMARY,
    Stat,
    columns,
    genre_summary,
    inputs,
    markdown_table,
    medians,
    summarise,
)
from pipeline.transforms import drop_duplicate_tracks


@pytest.fixture(autouse=True)
def _synchronous():
    """Dask's single-threaded scheduler (its ``tasks`` shuffle: no cluster here)."""
    with dask.config.set(scheduler="sync"):
        yield


def many_artists(rows: int = 3_000, seed: int = 0) -> pd.DataFrame:
    """Clean rows with about 600 artists (a few missing), 7 genres, random values."""
    rng = np.random.default_rng(seed)
    df = tiny().sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    artists = pd.Series([f"artist {i}" for i in rng.integers(0, 600, rows)], dtype="str")
    df["artists"] = artists.mask(rng.random(rows) < 0.02)
    df["track_genre"] = pd.Series(rng.choice(list("abcdefg"), rows), dtype="str")
    df["popularity"] = rng.integers(0, 101, rows)
    df["duration_ms"] = rng.integers(0, 10**6, rows)
    df["tempo"] = rng.random(rows) * 200
    df["explicit"] = rng.random(rows) < 0.3
    return df


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
    # medians: jazz 50, 70, 70 -> 70; pop 0, 100 -> the mean of the two middle values
    assert s.loc["jazz", "popularity_median"] == 70.0 and s.loc["pop", "popularity_median"] == 50.0
    assert list(s.reset_index().columns) == list(columns())


def test_summary_columns_contract_order() -> None:
    """The existing columns unchanged and in order, the three medians appended."""
    assert columns() == (
        "track_genre",
        "tracks",
        "unique_artists",
        "explicit_share",
        "popularity_mean",
        "popularity_min",
        "popularity_max",
        "duration_ms_mean",
        "danceability_mean",
        "energy_mean",
        "loudness_mean",
        "speechiness_mean",
        "acousticness_mean",
        "instrumentalness_mean",
        "liveness_mean",
        "valence_mean",
        "tempo_mean",
        "popularity_median",
        "duration_ms_median",
        "tempo_median",
    )
    assert columns(MERGEABLE) == columns()[:17]
    assert inputs()[:3] == ("track_genre", "artists", "explicit")


def test_medians_exact_for_odd_and_even_counts() -> None:
    df = tiny().iloc[:4].assign(track_genre=["a", "a", "a", "b"])
    df["popularity"] = [1, 10, 4, 7]
    df["tempo"] = [0.1, 0.2, 100.25, 3.0]
    df = pd.concat([df, df.iloc[[3]].assign(popularity=8, tempo=1e-300)])
    s = genre_summary(df).set_index("track_genre")
    assert s["popularity_median"].tolist() == [4.0, 7.5]
    assert s["tempo_median"].tolist() == [0.2, (3.0 + 1e-300) / 2]
    assert s["popularity_median"].dtype == np.float64


def test_medians_of_large_groups_side_by_side_and_interleaved_agree() -> None:
    """Rows of a genre together in large groups (numpy's selection per slice) or interleaved
    (pandas' group-by): the same medians as plain pandas, missing values left out."""
    df = many_artists(rows=4 * LARGE_GROUP * 7)
    together = df.sort_values("track_genre", kind="stable", ignore_index=True)
    want = summary_reference(df)
    assert_frames_match(genre_summary(together), want)
    assert_frames_match(genre_summary(df), want)
    with_gaps = together.astype({"tempo": "float64"})
    with_gaps.loc[::3, "tempo"] = np.nan
    table = pa.Table.from_pandas(with_gaps, preserve_index=False)
    tempo = [s for s in SUMMARY if s.name == "tempo_median"]
    got = medians(table, "track_genre", tempo, groups=7)["tempo_median"]
    plain = with_gaps.groupby("track_genre")["tempo"].median()
    assert got.sort_index().tolist() == plain.tolist()


def test_summary_dask_paths_equal_pandas() -> None:
    """The tree of partials, the shuffle, and whole groups: the same frame as pandas'."""
    df = arrow_backed(drop_duplicate_tracks(tiny()))
    want = genre_summary(df)
    for ddf in partitionings(df):
        pd.testing.assert_frame_equal(genre_summary(ddf).compute(), want)
        merged = genre_summary(ddf, MERGEABLE).compute()
        pd.testing.assert_frame_equal(merged, want[list(columns(MERGEABLE))])
    # jazz | pop | rock, each whole in its partition
    by_genre = dd.concat([dd.from_pandas(g, npartitions=1) for _, g in df.groupby("track_genre")])
    whole = genre_summary(by_genre, whole_groups=True)
    pd.testing.assert_frame_equal(whole.compute(), want)
    assert whole.npartitions == 1


def test_summary_same_on_pyarrow_backed_and_numpy_columns() -> None:
    df = drop_duplicate_tracks(tiny())
    pd.testing.assert_frame_equal(genre_summary(arrow_backed(df)), genre_summary(df))


def test_summary_tree_is_lazy_one_partition_without_shuffle() -> None:
    ddf = dd.from_pandas(drop_duplicate_tracks(tiny()), npartitions=3, sort=False)
    lazy = genre_summary(ddf, MERGEABLE)
    assert isinstance(lazy, dd.DataFrame) and lazy.npartitions == 1
    names = {k[0] if isinstance(k, tuple) else k for k in dict(lazy.__dask_graph__())}
    assert not any("shuffle" in n for n in names)


def test_summary_by_artists_equals_plain_pandas() -> None:
    """Many groups in several partitions, shuffled on the key: each artist once, the rows
    without artists left out, every statistic (medians too) as plain pandas computes it."""
    df = many_artists()
    ddf = dd.from_pandas(arrow_backed(df), npartitions=7, sort=False)
    want = summary_reference(df.dropna(subset=["artists"]), by="artists")
    for split_out in (1, 4):
        lazy = summarise(ddf, by="artists", split_out=split_out)
        assert lazy.npartitions == split_out
        got = lazy.compute().sort_values("artists", ignore_index=True)
        assert_frames_match(got, want)
        assert got["unique_artists"].eq(1).all() and len(got) == df["artists"].nunique()
    assert_frames_match(summarise(df, by="artists"), want)


def test_summary_by_genre_equals_plain_pandas_on_many_rows() -> None:
    df = many_artists()
    ddf = dd.from_pandas(arrow_backed(df), npartitions=5, sort=False)
    want = summary_reference(df)
    assert_frames_match(genre_summary(ddf).compute(), want)
    assert_frames_match(genre_summary(ddf, MERGEABLE).compute(), want[list(columns(MERGEABLE))])


def test_summary_equals_dasks_own_groupby_aggregation() -> None:
    """The Arrow kernels answer what Dask's own groupby-agg answers (the alternatives the
    benchmark's choices measure), by genre and by artists."""
    df = many_artists()
    ddf = dd.from_pandas(arrow_backed(df), npartitions=4, sort=False)
    for by, stats, split_out in (("track_genre", MERGEABLE, 1), ("artists", BY_STATS, 2)):
        plain = summary_by_groupby(ddf, by, stats, split_out).compute()
        want = plain.reset_index().sort_values(by, ignore_index=True).astype({by: "str"})
        got = summarise(ddf, by, stats, split_out=split_out).compute()
        got = got.sort_values(by, ignore_index=True)
        assert_frames_match(got, want[list(columns(stats, by))])


def test_a_new_statistic_of_a_known_kind_is_one_line() -> None:
    """A declaration appended to the table flows through every path."""
    stats = (
        *SUMMARY,
        Stat("energy_max", "max", "energy"),
        Stat("energy_mid", "median", "energy"),
    )
    df = many_artists()
    ddf = dd.from_pandas(arrow_backed(df), npartitions=3, sort=False)
    got = genre_summary(ddf, stats).compute()
    g = df.groupby("track_genre")
    assert got["energy_max"].tolist() == g["energy"].max().tolist()
    assert got["energy_mid"].tolist() == g["energy"].median().tolist()
    assert list(got.columns) == list(columns(stats))


def test_unknown_statistic_and_bad_split_out_named() -> None:
    with pytest.raises(ValueError, match="unknown statistic 'mode'; choose among count, "):
        Stat("tempo_mode", "mode", "tempo")
    ddf = dd.from_pandas(tiny(), npartitions=2)
    with pytest.raises(ValueError, match="split_out must be at least 1, got 0"):
        summarise(ddf, split_out=0)


def test_markdown_table_lists_every_statistic() -> None:
    table = markdown_table()
    assert table.count("\n") == len(SUMMARY) + 1
    assert "| `tempo_median` | exact median" in table
    assert set(KINDS) >= {s.kind for s in SUMMARY}
    assert all(schema.BY_NAME[c] for c in inputs())
