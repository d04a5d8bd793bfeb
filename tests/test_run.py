"""The whole CLI with a real local cluster: contract files, equal results, errors, publishing."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FILES, assert_frames_match, popen_run, reference, wait_until_writing

from pipeline import publish, read
from pipeline.blocks import Block
from pipeline.memory import imports_frozen
from pipeline.run import exit_process, main
from pipeline.schema import FILE_COLUMNS
from pipeline.storage import StorageOptions

HEADER = ",".join(FILE_COLUMNS)
ROW = (
    "0,id{n},Artist,Album,Song,{pop},200000,False,0.5,0.5,1,-5.0,1,0.1,0.1,0.0,0.1,0.5,120.0,4,jazz"
)


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--dashboard-address", "127.0.0.1:0"])


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_writes_the_contract_equal_to_pandas(small_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli(small_csv, "--output", out, "--blocksize", "256KiB", "--top", "5") == 0
    assert {p.name for p in out.iterdir()} == FILES
    want_summary, want_top = reference(small_csv, top=5)
    assert_frames_match(pd.read_csv(out / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(out / "top_tracks.csv"), want_top)
    m = json.loads((out / "manifest.json").read_text())
    assert m["rows_read"] == 12_000 == m["rows_kept"] + m["rows_rejected"] + m["duplicates_dropped"]
    assert m["rows_kept"] == want_summary["tracks"].sum()
    assert m["partitions"] > 1 and m["genres"] == 12
    assert publish.count_parquet_rows(out / "tracks") == m["rows_kept"]
    tracks = pd.read_parquet(out / "tracks")
    assert sorted(tracks["track_genre"].astype(str).unique()) == list(want_summary["track_genre"])
    assert len(tracks.drop_duplicates(["track_id", "track_genre"])) == m["rows_kept"]
    assert not list(tmp_path.glob(".out.staging-*"))  # no staging left behind


def test_run_cross_partition_duplicates_match_pandas(big_csv: Path, tmp_path: Path) -> None:
    """Small blocks put twins in different partitions; the result must not change."""
    out = tmp_path / "out"
    assert run_cli(big_csv, "--output", out, "--blocksize", "1MiB") == 0
    want_summary, want_top = reference(big_csv)
    assert_frames_match(pd.read_csv(out / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(out / "top_tracks.csv"), want_top)
    tracks = pd.read_parquet(out / "tracks")
    assert len(tracks) == want_summary["tracks"].sum()
    assert not tracks.duplicated(["track_id", "track_genre"]).any()


def test_run_parses_each_block_once(small_csv: Path, tmp_path: Path, monkeypatch) -> None:
    """The clean rows and the rejected rows come from the same block tasks: one parse each."""
    calls: list[int] = []
    real = read.parse_columns
    monkeypatch.setattr(
        read,
        "parse_columns",
        lambda data, block, types: calls.append(block.ordinal) or real(data, block, types),
    )
    assert run_cli(small_csv, "--output", tmp_path / "out", "--blocksize", "256KiB") == 0
    partitions = json.loads((tmp_path / "out" / "manifest.json").read_text())["partitions"]
    assert sorted(calls) == list(range(partitions))


def test_run_rerun_replaces_output_whole(small_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli(small_csv, "--output", out) == 0
    first = (out / "genre_summary.csv").read_bytes()
    (out / "stray.txt").write_text("from an older run")
    assert run_cli(small_csv, "--output", out) == 0
    assert (out / "genre_summary.csv").read_bytes() == first
    assert not (out / "stray.txt").exists()


def test_run_failed_run_leaves_previous_output(small_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run_cli(small_csv, "--output", out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = write(tmp_path / "bad.csv", "track_id,artists")
    assert run_cli(bad, "--output", out) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".out.staging-*"))


def test_run_rejects_rows_with_line_and_reason(tmp_path: Path) -> None:
    rows = [ROW.format(n=i, pop=i) for i in range(5)]
    rows[1] = rows[1].replace(",1,-5.0,", ",1,-500.0,")  # loudness out of range
    rows[3] = rows[3] + ",extra"  # one field too many
    src = write(tmp_path / "in.csv", HEADER, *rows)
    out = tmp_path / "out"
    assert run_cli(src, "--output", out) == 0
    rejected = pd.read_csv(out / "rejected_rows.csv")
    assert rejected["line"].tolist() == [3, 5]
    assert rejected["reason"].tolist() == [
        "loudness out of range -60..10: '-500.0'",
        "expected 21 fields, found 22",
    ]
    assert rejected["track_id"].tolist() == ["id1", "id3"]
    assert pd.read_csv(out / "genre_summary.csv")["tracks"].tolist() == [3]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (None, "no such file"),
        ([], "is empty"),
        ([HEADER], "has a header but no data rows"),
        (["track_id,artists,popularity"], "missing required columns ['album_name', 'track_name'"),
        (
            [HEADER + ",track_id", ROW.format(n=1, pop=1) + ",x"],
            "duplicate column names ['track_id']",
        ),
    ],
)
def test_run_bad_input_one_line_exit_2(tmp_path: Path, capsys, lines, message) -> None:
    src = tmp_path / "in.csv"
    if lines is not None:
        src.write_text("\n".join(lines) + ("\n" if lines else ""))
    assert run_cli(src, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {src}") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_run_refuses_to_replace_a_foreign_directory(
    small_csv: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    assert run_cli(small_csv, "--output", tmp_path / "home") == 2
    assert "is not a genre-pipeline output" in capsys.readouterr().err
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_run_bad_option_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--top", "many"])
    assert exc.value.code == 2
    assert run_cli("--top", "0") == 2
    assert "--top must be at least 1, got 0" in capsys.readouterr().err


def test_imports_frozen_pauses_the_collector_then_freezes() -> None:
    """Inside: no collection; after: the objects frozen, the collector back on; not enabled:
    nothing changes (``pipeline.run`` imported as a library)."""
    try:
        with imports_frozen():
            assert not gc.isenabled()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.unfreeze()
        with imports_frozen(enabled=False):
            assert gc.isenabled()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_import_pipeline_imports_neither_pandas_nor_dask() -> None:
    """So that ``python -m pipeline.run`` imports them itself, inside ``imports_frozen``."""
    code = "import sys, pipeline; print(sorted({'pandas', 'dask', 'pyarrow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "[]\n", done.stderr


def test_exit_process_keeps_the_code_and_freezes_the_objects() -> None:
    """The process ends with main's code; its objects are frozen so the exit skips them."""
    try:
        with pytest.raises(SystemExit) as ended:
            exit_process(2)
        assert ended.value.code == 2 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.slow
def test_run_module_default_generates_data_and_runs(tmp_path: Path) -> None:
    """`python -m pipeline.run` with no arguments, in a fresh directory, as a new user runs it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--dashboard-address", "127.0.0.1:0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "data/dataset.csv not found: writing a synthetic 114,000-row dataset" in done.stdout
    for word in ("partitions", "dashboard http://127.0.0.1:", "seconds", "outputs"):
        assert word in done.stdout
    assert {p.name for p in (tmp_path / "output").iterdir()} == FILES
    assert "Completed" not in done.stdout  # no progress bar when the output is not a terminal
    want_summary, want_top = reference(tmp_path / "data" / "dataset.csv")
    assert_frames_match(pd.read_csv(tmp_path / "output" / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(tmp_path / "output" / "top_tracks.csv"), want_top)
    assert len(want_summary) == 114 and want_summary["tracks"].sum() < 114_000


def test_run_glob_of_several_files(small_csv: Path, tmp_path: Path) -> None:
    """Each file keeps its own header and line numbers; results equal the concatenation."""
    lines = small_csv.read_text().splitlines(keepends=True)
    (tmp_path / "in").mkdir()
    write(
        tmp_path / "in" / "part-1.csv",
        lines[0].rstrip("\n"),
        *(x.rstrip("\n") for x in lines[1:7000]),
    )
    write(
        tmp_path / "in" / "part-2.csv",
        lines[0].rstrip("\n"),
        *(x.rstrip("\n") for x in lines[7000:]),
    )
    out = tmp_path / "out"
    assert run_cli(str(tmp_path / "in" / "part-*.csv"), "--output", out) == 0
    want_summary, want_top = reference(small_csv)
    assert_frames_match(pd.read_csv(out / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(out / "top_tracks.csv"), want_top)
    assert len(json.loads((out / "manifest.json").read_text())["input"]) == 2
    assert run_cli(str(tmp_path / "in" / "nothing-*.csv"), "--output", out) == 2


def test_run_line_breaks_inside_quoted_values(tmp_path: Path, capsys) -> None:
    """Byte-range blocks would cut such a file inside a value: it is detected, its blocks are
    cut at record ends (still many partitions), with results identical to pandas and rejected
    rows at their physical lines."""
    rows = [
        ROW.format(n=i, pop=i % 100).replace(",Song,", f',"Song\nverse ""{i}""",')
        for i in range(300)
    ]
    want_summary, want_top = reference(write(tmp_path / "ok.csv", HEADER, *rows[:250], *rows[251:]))
    rows[250] = rows[250].replace(",200000,", ",-3,")  # physical line 2 + 2 * 250 = 502
    src = write(tmp_path / "in.csv", HEADER, *rows)
    out = tmp_path / "out"
    assert run_cli(src, "--output", out, "--blocksize", "1KiB") == 0
    assert "has line breaks inside quoted values: cutting its partitions at record ends" in (
        capsys.readouterr().err
    )
    assert_frames_match(pd.read_csv(out / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(out / "top_tracks.csv"), want_top)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows_kept"] == 299 and manifest["partitions"] > 20
    rejected = pd.read_csv(out / "rejected_rows.csv")
    assert rejected[["line", "track_name"]].values.tolist() == [[502, 'Song\nverse "250"']]


def test_run_stray_quote_and_line_breaks_read_whole(tmp_path: Path, capsys) -> None:
    """A quote inside an unquoted value (kept as text, like pandas does) breaks the quote
    parity the cuts rely on: the file is then read as one partition, results unchanged."""
    rows = [ROW.format(n=i, pop=i % 100) for i in range(200)]
    rows[20] = rows[20].replace(",Album,", ',Alb"um,')
    rows[100:] = [r.replace(",Song,", ',"So\nng",') for r in rows[100:]]
    src = write(tmp_path / "in.csv", HEADER, *rows)
    out = tmp_path / "out"
    assert run_cli(src, "--output", out, "--blocksize", "1KiB") == 0
    assert "reading it as one partition (quotes do not pair up)" in capsys.readouterr().err
    want_summary, want_top = reference(src)
    assert_frames_match(pd.read_csv(out / "genre_summary.csv"), want_summary)
    assert_frames_match(pd.read_csv(out / "top_tracks.csv"), want_top)
    assert json.loads((out / "manifest.json").read_text())["partitions"] == 1


def test_run_unterminated_quote_exit_2_with_line(tmp_path: Path, capsys) -> None:
    rows = [ROW.format(n=i, pop=1) for i in range(5)]
    rows[3] = rows[3].replace(",Song,", ',"Song,')
    src = write(tmp_path / "in.csv", HEADER, *rows)
    assert run_cli(src, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src}:5: cannot be parsed as CSV") and err.count("\n") == 1


def test_run_bom_and_crlf_same_results(small_csv: Path, tmp_path: Path) -> None:
    windows = tmp_path / "windows.csv"
    windows.write_bytes(b"\xef\xbb\xbf" + small_csv.read_bytes().replace(b"\n", b"\r\n"))
    assert run_cli(small_csv, "--output", tmp_path / "a", "--blocksize", "256KiB") == 0
    assert run_cli(windows, "--output", tmp_path / "b", "--blocksize", "256KiB") == 0
    # Equal; a mean may differ in its last bit: CRLF moves the block boundaries, and with them
    # the order of the float sums.
    for name in ("genre_summary.csv", "top_tracks.csv"):
        assert_frames_match(pd.read_csv(tmp_path / "b" / name), pd.read_csv(tmp_path / "a" / name))
    assert (tmp_path / "b" / "rejected_rows.csv").read_text().count("\n") == 1


def test_run_invalid_utf8_exit_2_names_the_line(tmp_path: Path, capsys) -> None:
    rows = [ROW.format(n=i, pop=1).encode() for i in range(5)]
    rows[2] = rows[2].replace(b"Album", b"Alb\xffum")
    src = tmp_path / "in.csv"
    src.write_bytes(HEADER.encode() + b"\n" + b"\n".join(rows) + b"\n")
    assert run_cli(src, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {src}:4: is not valid UTF-8 text (pass --encoding if the file uses another "
        "encoding); fix or remove that line\n"
    )
    # the same bytes are fine Latin-1: read as asked, the row is kept with its text
    assert run_cli(src, "--output", tmp_path / "out", "--encoding", "latin-1") == 0
    top = pd.read_parquet(tmp_path / "out" / "tracks")
    assert "Albÿum" in set(top["album_name"])


def test_run_invalid_utf8_in_a_later_block_names_the_file_line(tmp_path: Path, capsys) -> None:
    rows = [ROW.format(n=i, pop=1).encode() for i in range(200)]
    rows[150] = rows[150].replace(b"Album", b"Alb\xffum")
    src = tmp_path / "in.csv"
    src.write_bytes(HEADER.encode() + b"\n" + b"\n".join(rows) + b"\n")
    assert run_cli(src, "--output", tmp_path / "out", "--blocksize", "1KiB") == 2
    assert capsys.readouterr().err.startswith(f"error: {src}:152: is not valid UTF-8 text")


def test_run_unknown_or_unusable_encoding_exit_2(small_csv: Path, tmp_path: Path, capsys) -> None:
    assert run_cli(small_csv, "--output", tmp_path / "out", "--encoding", "klingon") == 2
    assert capsys.readouterr().err == "error: --encoding: unknown encoding 'klingon'\n"
    assert run_cli(small_csv, "--output", tmp_path / "out", "--encoding", "utf-16") == 2
    assert "only ASCII-compatible encodings work" in capsys.readouterr().err


def test_run_binary_file_named_csv_exit_2(small_csv: Path, tmp_path: Path, capsys) -> None:
    """A Parquet file named .csv (a gzip one is read: tests/test_unpack.py)."""
    parquet = tmp_path / "pq.csv"
    pd.read_csv(small_csv, nrows=50).to_parquet(parquet)
    assert run_cli(parquet, "--output", tmp_path / "out") == 2
    assert capsys.readouterr().err == (
        f"error: {parquet}:1: the header is not utf-8 text; is this a CSV file? (see --encoding)\n"
    )


def test_run_nul_byte_in_a_value_is_rejected(tmp_path: Path) -> None:
    rows = [ROW.format(n=i, pop=1) for i in range(3)]
    rows[1] = rows[1].replace("id1", "id\x001")
    src = write(tmp_path / "in.csv", HEADER, *rows)
    assert run_cli(src, "--output", tmp_path / "out") == 0
    rejected = pd.read_csv(tmp_path / "out" / "rejected_rows.csv")
    assert rejected[["line", "reason"]].values.tolist() == [
        [3, "track_id contains a NUL byte (is this a text file?)"]
    ]


def bad_rows_file(tmp_path: Path, bad: int, total: int = 10) -> Path:
    rows = [ROW.format(n=i, pop=1 if i >= bad else 101) for i in range(total)]
    return write(tmp_path / "in.csv", HEADER, *rows)


def test_run_strict_fails_on_any_rejected_row(tmp_path: Path, capsys) -> None:
    src = bad_rows_file(tmp_path, bad=2)
    assert run_cli(src, "--output", tmp_path / "out", "--strict") == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {src}: 2 of 10 rows rejected, more than --strict; first: line 2: popularity "
        "out of range 0..100: '101'; line 3: popularity out of range 0..100: '101'\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("limit", "code"), [("2", 0), ("1", 2), ("0.2", 0), ("10%", 2)])
def test_run_max_rejects_count_or_fraction(tmp_path: Path, limit: str, code: int) -> None:
    src = bad_rows_file(tmp_path, bad=2)
    assert run_cli(src, "--output", tmp_path / "out", "--max-rejects", limit) == code
    assert (tmp_path / "out" / "_SUCCESS").exists() == (code == 0)


def test_run_second_run_on_same_output_refuses(small_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    with publish.output_lock(out):  # another run holds the output
        assert run_cli(small_csv, "--output", out) == 2
    assert "another run is writing this output now" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli(small_csv, "--output", out) == 0


def test_run_warns_when_dashboard_leaves_loopback(small_csv: Path, tmp_path: Path, capsys) -> None:
    args = [str(small_csv), "--output", str(tmp_path / "out"), "--dashboard-address", ":0"]
    assert main(args) == 0
    assert "Dask has no authentication" in capsys.readouterr().err  # warnings: stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_signal_leaves_previous_output_and_no_staging(
    large_csv: Path, tmp_path: Path, signum: int
) -> None:
    src = large_csv
    out = tmp_path / "out"
    (out).mkdir()
    (out / "_SUCCESS").write_text("")
    (out / "genre_summary.csv").write_text("previous\n")
    proc = popen_run(src, "-o", out)
    wait_until_writing(proc, out)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "error: interrupted; the previous output is untouched"
    assert (out / "genre_summary.csv").read_text() == "previous\n"
    assert not list(tmp_path.glob(".out.staging-*"))


def test_package_api_names_stay_callable(small_csv: Path, tmp_path: Path) -> None:
    """`from pipeline import ...` keeps working after the CLI modules were imported."""
    import pipeline.generate
    import pipeline.run  # noqa: F401
    from pipeline import Config, generate_tracks, run_pipeline

    src = generate_tracks(tmp_path / "g.csv", rows=2000, seed=1)
    manifest = run_pipeline(
        Config(input=str(src), output=str(tmp_path / "out"), dashboard_address="127.0.0.1:0")
    )
    assert manifest["rows_read"] == 2000 and (tmp_path / "out" / "_SUCCESS").exists()


def test_run_columns_by_name_extra_and_reordered(small_csv: Path, tmp_path: Path) -> None:
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    shuffled = df[list(reversed(df.columns))].assign(comment="ignored, really")
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    assert run_cli(small_csv, "--output", tmp_path / "a") == 0
    assert run_cli(tmp_path / "shuffled.csv", "--output", tmp_path / "b") == 0
    for name in ("genre_summary.csv", "top_tracks.csv"):
        assert_frames_match(pd.read_csv(tmp_path / "b" / name), pd.read_csv(tmp_path / "a" / name))


def test_run_genre_values_cannot_escape_the_output(tmp_path: Path) -> None:
    genres = ["../../etc", "a/b", "..", "jazz"]
    rows = [ROW.format(n=i, pop=1).replace(",jazz", f",{g}") for i, g in enumerate(genres)]
    out = tmp_path / "deep" / "out"
    assert run_cli(write(tmp_path / "in.csv", HEADER, *rows), "--output", out) == 0
    made = sorted(p.name for p in (out / "tracks").iterdir())
    assert made == [
        "track_genre=..",
        "track_genre=..%2F..%2Fetc",
        "track_genre=a%2Fb",
        "track_genre=jazz",
    ]
    assert {p.name for p in tmp_path.rglob("*.parquet")} == {p.name for p in out.rglob("*.parquet")}
    back = pd.read_parquet(out / "tracks")
    assert sorted(back["track_genre"].astype(str)) == sorted(genres)


def test_run_removes_staging_left_by_a_killed_run(small_csv: Path, tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".out.staging-{dead}"
    (stale / "tracks").mkdir(parents=True)
    assert run_cli(small_csv, "--output", tmp_path / "out") == 0
    assert not stale.exists()


def test_run_task_that_always_fails_exit_1_previous_output_intact(
    small_csv: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "out"
    assert run_cli(small_csv, "--output", out) == 0
    before = (out / "genre_summary.csv").read_bytes()
    real = read.parse_columns

    def broken(data: memoryview, block: Block, types: dict):
        if block.ordinal == 1:
            raise OSError("disk on fire")
        return real(data, block, types)

    monkeypatch.setattr(read, "parse_columns", broken)
    assert run_cli(small_csv, "--output", out, "--blocksize", "256KiB") == 1
    assert capsys.readouterr().err == (
        "error: OSError: disk on fire (run with --verbose for details)\n"
    )
    assert (out / "genre_summary.csv").read_bytes() == before
    assert not list(tmp_path.glob(".out.staging-*"))


def test_run_interrupted_while_writing_leaves_previous_output(
    small_csv: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Ctrl-C after the compute, while the outputs are being written (simulated)."""
    out = tmp_path / "out"
    assert run_cli(small_csv, "--output", out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = publish.write_csv

    def interrupted(df: pd.DataFrame, path: str, storage_options: StorageOptions) -> None:
        real(df, path, storage_options)
        if path.endswith("/top_tracks.csv"):
            raise KeyboardInterrupt

    monkeypatch.setattr(publish, "write_csv", interrupted)
    assert run_cli(small_csv, "--output", out) == 130
    assert capsys.readouterr().err == "error: interrupted; the previous output is untouched\n"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".out.staging-*"))


def test_package_imports_where_fcntl_does_not_exist() -> None:
    """Windows has no fcntl: ``import pipeline`` and the notebook API must work there (the
    output lock takes msvcrt's lock instead; distributed itself needs one of the two)."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"  # importing it now raises ImportError
        "import pipeline, pipeline.publish\n"
        "from pipeline import read_tracks, Tracks, genre_summary, drop_duplicate_tracks\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
