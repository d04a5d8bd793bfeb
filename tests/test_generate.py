"""Tests of pipeline.generate: determinism, shape, realism, CSV validity and the CLI."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.csv as pv
import pytest

import pipeline.generate as gen
from pipeline.generate import EMPTY_NAMES_ROW, generate
from pipeline.schema import COLUMNS, FILE_COLUMNS, GENRES

ROOT = Path(__file__).resolve().parents[1]
REAL_HEADER = (
    ",track_id,artists,album_name,track_name,popularity,duration_ms,explicit,danceability,energy,"
    "key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,"
    "time_signature,track_genre"
)
NAME_COLUMNS = ["artists", "album_name", "track_name"]


def read(path: Path) -> pd.DataFrame:
    """The file as pandas reads it, empty fields kept as empty strings."""
    return pd.read_csv(path, index_col=0, keep_default_na=False)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 114,000-row file."""
    return generate(tmp_path_factory.mktemp("full") / "dataset.csv")


@pytest.fixture(scope="module")
def frame(full: Path) -> pd.DataFrame:
    return read(full)


@pytest.fixture(scope="module")
def two_cycles(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A file of two full genre cycles plus 1,500 rows."""
    return read(generate(tmp_path_factory.mktemp("big") / "big.csv", rows=229_500))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pipeline.generate", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_generate_same_seed_same_bytes(tmp_path: Path) -> None:
    first = generate(tmp_path / "a.csv", rows=2500, seed=7).read_bytes()
    assert generate(tmp_path / "b.csv", rows=2500, seed=7).read_bytes() == first


def test_generate_different_seed_different_bytes(tmp_path: Path) -> None:
    first = generate(tmp_path / "a.csv", rows=2500, seed=7).read_bytes()
    assert generate(tmp_path / "b.csv", rows=2500, seed=8).read_bytes() != first


def test_generate_bytes_do_not_depend_on_chunk_rows(tmp_path: Path) -> None:
    default = generate(tmp_path / "a.csv", rows=2500).read_bytes()
    assert generate(tmp_path / "b.csv", rows=2500, chunk_rows=777).read_bytes() == default


def test_generate_small_file_is_prefix_of_bigger(tmp_path: Path) -> None:
    small = generate(tmp_path / "a.csv", rows=999).read_bytes()
    assert generate(tmp_path / "b.csv", rows=2500).read_bytes().startswith(small)


def test_generate_header_is_exactly_the_real_one(full: Path) -> None:
    with open(full, encoding="utf-8", newline="") as f:
        header = f.readline()
    assert header == REAL_HEADER + "\n"
    assert header.rstrip("\n").split(",") == list(FILE_COLUMNS)


@pytest.mark.parametrize("rows", [1, 999, 2500])
def test_generate_row_count_exact(tmp_path: Path, rows: int) -> None:
    path = generate(tmp_path / "x.csv", rows=rows)
    assert path.read_bytes().count(b"\n") == rows + 1
    df = read(path)
    assert len(df) == rows
    assert list(df.index) == list(range(rows))


def test_generate_row_count_exact_at_full_size(full: Path, frame: pd.DataFrame) -> None:
    assert full.read_bytes().count(b"\n") == 114_001
    assert list(frame.index) == list(range(114_000))


def test_generate_genres_in_blocks_of_1000(frame: pd.DataFrame) -> None:
    counts = frame["track_genre"].value_counts()
    assert set(counts.index) == set(GENRES) and len(GENRES) == 114
    assert (counts == 1000).all()
    expected = [GENRES[(i // 1000) % 114] for i in range(len(frame))]
    assert frame["track_genre"].tolist() == expected


def test_generate_genre_blocks_cycle_past_114000(two_cycles: pd.DataFrame) -> None:
    expected = [GENRES[(i // 1000) % 114] for i in range(len(two_cycles))]
    assert two_cycles["track_genre"].tolist() == expected
    assert two_cycles["track_genre"].iloc[-1] == GENRES[1]


def test_generate_pandas_and_pyarrow_read_the_same(full: Path, frame: pd.DataFrame) -> None:
    table = pv.read_csv(full)
    assert table.num_rows == len(frame) == 114_000
    assert table.column_names == list(FILE_COLUMNS)
    arrow = table.to_pandas().set_index("")
    for name in frame.columns:
        assert arrow[name].tolist() == frame[name].tolist(), name


def test_generate_values_in_schema_ranges(frame: pd.DataFrame) -> None:
    for column in COLUMNS:
        values = frame[column.name]
        if column.kind == "int":
            assert pd.api.types.is_integer_dtype(values), column.name
        if column.kind == "float":
            assert pd.api.types.is_float_dtype(values), column.name
        if column.low is not None:
            assert values.min() >= column.low and values.max() <= column.high, column.name
    assert frame["track_id"].str.fullmatch(r"[0-9A-Za-z]{22}").all()
    assert set(frame["time_signature"]) <= {0, 1, 3, 4, 5}
    assert frame["time_signature"].eq(4).mean() > 0.8
    assert frame["key"].between(0, 11).mean() > 0.99
    assert frame["popularity"].eq(0).mean() > 0.05
    # the tracks' own length (2.5 to 5 minutes on average, in ms), a value of the data
    assert 150_000 < frame["duration_ms"].mean() < 300_000


def test_generate_explicit_is_written_true_or_false(full: Path) -> None:
    raw = pd.read_csv(full, dtype=str, keep_default_na=False)["explicit"]
    assert set(raw) == {"True", "False"}


def test_generate_floats_are_plain_decimals(full: Path) -> None:
    raw = pd.read_csv(full, dtype=str, keep_default_na=False)
    for name in ["danceability", "loudness", "tempo", "instrumentalness"]:
        assert raw[name].str.fullmatch(r"-?\d+\.\d{1,3}").all(), name


def test_generate_about_a_fifth_of_rows_share_a_track_with_another_genre(
    frame: pd.DataFrame,
) -> None:
    genres_per_track = frame.groupby("track_id")["track_genre"].nunique()
    shared = frame["track_id"].map(genres_per_track) > 1
    assert 0.15 <= shared.mean() <= 0.25
    # a shared track keeps its names
    names = frame[shared].groupby("track_id")[NAME_COLUMNS].nunique()
    assert (names <= 1).all().all()


def test_generate_repeats_a_few_hundred_track_genre_pairs(frame: pd.DataFrame) -> None:
    assert 100 <= frame.duplicated(["track_id", "track_genre"]).sum() <= 1000


def test_generate_repeats_pairs_mostly_beside_their_twin(two_cycles: pd.DataFrame) -> None:
    """As in real listings, a repeated pair sits in its twin's 1,000-row block; far-away
    repeats (an earlier cycle of the genre) are rare (P_FAR_DUP)."""
    block = pd.Series(two_cycles.index // 1000, index=two_cycles.index)
    first_block = block.groupby([two_cycles["track_id"], two_cycles["track_genre"]]).transform(
        "min"
    )
    repeated = two_cycles.duplicated(["track_id", "track_genre"])
    assert repeated.sum() > 400
    assert (repeated & (block != first_block)).sum() <= 0.01 * repeated.sum()


def test_generate_one_row_with_empty_names(full: Path, frame: pd.DataFrame) -> None:
    empty = frame[(frame[NAME_COLUMNS] == "").all(axis=1)]
    assert list(empty.index) == [EMPTY_NAMES_ROW]
    assert len(empty["track_id"].iloc[0]) == 22
    assert (frame[NAME_COLUMNS] == "").any(axis=1).sum() == 1
    line = full.read_text(encoding="utf-8").splitlines()[EMPTY_NAMES_ROW + 1]
    assert line.split(",")[2:5] == ["", "", ""]


def test_generate_tricky_names_are_valid_minimal_csv(full: Path, frame: pd.DataFrame) -> None:
    lines = full.read_text(encoding="utf-8").splitlines()
    rows = list(csv.reader(lines))
    with_comma = [(line, f) for line, row in zip(lines, rows, strict=True) for f in row if "," in f]
    assert with_comma and all(f'"{f}"' in line for line, f in with_comma if '"' not in f)
    assert any('""' in line for line in lines)
    assert any(not line.isascii() for line in lines)
    assert frame["artists"].str.contains(";").mean() > 0.05
    assert frame["artists"].str.contains(",").any()
    assert frame["track_name"].str.contains('"').any()
    # the bytes are exactly what the stdlib csv writer (QUOTE_MINIMAL) writes for these fields
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    assert out.getvalue() == "\n".join(lines) + "\n"


def test_generate_features_depend_on_genre(frame: pd.DataFrame) -> None:
    means = frame.groupby("track_genre").mean(numeric_only=True)
    assert means.loc["classical", "loudness"] < means.loc["heavy-metal", "loudness"] - 8
    assert means.loc["metal", "energy"] > means.loc["sleep", "energy"] + 0.4
    assert means.loc["classical", "acousticness"] > means.loc["techno", "acousticness"] + 0.3
    assert means.loc["comedy", "speechiness"] > 0.5 > means.loc["pop", "speechiness"]
    assert means.loc["kids", "valence"] > means.loc["sad", "valence"] + 0.3
    assert means.loc["hip-hop", "explicit"] > means.loc["classical", "explicit"] + 0.2
    assert means.loc["edm", "danceability"] > means.loc["classical", "danceability"] + 0.2


def test_generate_artist_pools_are_bounded(frame: pd.DataFrame, two_cycles: pd.DataFrame) -> None:
    one, two = frame["artists"].nunique(), two_cycles["artists"].nunique()
    assert 5_000 < one < 50_000
    assert two < one * 1.3
    assert frame.groupby("track_genre")["artists"].nunique().between(100, 1000).all()


def test_generate_rejects_non_positive_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        generate(tmp_path / "x.csv", rows=0)
    assert list(tmp_path.iterdir()) == []


def test_generate_leaves_nothing_behind_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing_chunk(*args: object) -> object:
        calls.append(args)
        if len(calls) > 1:
            raise RuntimeError("disk on fire")
        return real_chunk(*args)

    real_chunk = gen._chunk
    monkeypatch.setattr(gen, "_chunk", failing_chunk)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "sub" / "x.csv", rows=2500, chunk_rows=1000)
    assert list((tmp_path / "sub").iterdir()) == []


def test_generate_creates_parents_and_no_temp_files(tmp_path: Path) -> None:
    path = generate(tmp_path / "a" / "b" / "x.csv", rows=5)
    assert path == tmp_path / "a" / "b" / "x.csv"
    assert list(path.parent.iterdir()) == [path]


def test_generate_cli_writes_rows(tmp_path: Path) -> None:
    out = tmp_path / "cli" / "x.csv"
    result = run_cli("--rows", "10", "--output", str(out), "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert len(read(out)) == 10
    assert out.read_bytes() == generate(tmp_path / "y.csv", rows=10, seed=1).read_bytes()
    assert (
        result.stdout.count("\n") == 1 and str(out) in result.stdout and "10 rows" in result.stdout
    )


@pytest.mark.parametrize("rows", ["0", "-5", "ten"])
def test_generate_cli_bad_rows_exits_2_with_one_line(tmp_path: Path, rows: str) -> None:
    result = run_cli("--rows", rows, "--output", str(tmp_path / "x.csv"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--rows" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_generate_cli_uncreatable_parent_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    result = run_cli("--rows", "5", "--output", str(tmp_path / "file" / "x.csv"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_generate_cli_help_reads_well() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ["--rows", "--output", "--seed", "114000", "data/dataset.csv"]:
        assert word in result.stdout


def test_generate_line_breaks_every_nth_track_name(tmp_path: Path) -> None:
    """The same rows, but every third track name holds a line break (quoted, so the records
    stay the same while the physical lines do not)."""
    plain = generate(tmp_path / "plain.csv", rows=3000, seed=5)
    broken = generate(tmp_path / "broken.csv", rows=3000, seed=5, line_breaks=3)
    with open(plain, newline="") as a, open(broken, newline="") as b:
        want, got = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert len(got) == len(want) == 3000
    names = [r["track_name"] for r in got]
    assert all(
        ("\n" in n) == (i % 3 == 0 and " " in want[i]["track_name"]) for i, n in enumerate(names)
    )
    assert [n.replace("\n", " ") for n in names] == [r["track_name"] for r in want]
    assert [{**r, "track_name": ""} for r in got] == [{**r, "track_name": ""} for r in want]
    with pytest.raises(ValueError, match="line_breaks must be 0 or positive"):
        generate(tmp_path / "x.csv", rows=3, line_breaks=-1)
