"""The benchmark: every engine equal to pandas through the runner, the check, results, CLI."""

from __future__ import annotations

import csv
import importlib
import os
import shutil
from pathlib import Path

import dask
import pandas as pd
import pytest
from conftest import assert_frames_match, reference, track_row, write_csv

from pipeline import job
from pipeline.benchmark import check, cli, phases, queries, report, results
from pipeline.benchmark.engines import ENGINES, OPTIONAL, TOP, WORKLOADS, load, pandas_c
from pipeline.benchmark.runner import Study, input_file, run_study
from pipeline.blocks import plan_input
from pipeline.config import Config
from pipeline.outputs import SUMMARY_CSV, TOP_CSV
from pipeline.schema import GENRE
from pipeline.summary import KINDS

ROWS, SEED = 3_000, 7  # 3 genres
CLUSTERS = ("dask", "dask-limited")  # they start a distributed cluster: marked slow
FAST = tuple(n for n in ENGINES if n not in CLUSTERS)


def quiet(_: str) -> None:
    """An echo that prints nothing."""


def tiny_study(tmp: Path, engines: tuple[str, ...], **kw) -> Study:
    """A study of one tiny size, one counted run, no warm-up."""
    kw = {"repeats": 1, "warmup": 0, **kw}
    return Study(rows=(ROWS,), engines=engines, output=tmp / "out", data_dir=tmp, seed=SEED, **kw)


@pytest.fixture(scope="module")
def fast_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, list[dict]]:
    """Every engine but the cluster one, both workloads, through the runner once."""
    study = tiny_study(tmp_path_factory.mktemp("bench"), FAST)
    return study, run_study(study, echo=quiet)


@pytest.fixture(scope="module")
def answer(fast_study: tuple[Study, list[dict]]) -> pd.DataFrame:
    """The pandas engine's summary of the tiny file, computed in this process."""
    study = fast_study[0]
    return pandas_c.summary(str(input_file(study.data_dir, ROWS, SEED, quiet)), {})


def workloads(engine: str) -> list[str]:
    """An engine's workloads in a study's order; read queries the dataset its full wrote."""
    module = load(ENGINES[engine])
    return [w for w in ("summary", "full") if hasattr(module, w)] + (
        ["read"] if hasattr(module, "full") else []
    )


@pytest.mark.parametrize("engine", FAST)
def test_engine_equals_pandas_through_the_runner(
    fast_study: tuple[Study, list[dict]], engine: str
) -> None:
    if engine in OPTIONAL:
        pytest.importorskip(engine)
    runs = [r for r in fast_study[1] if r["engine"] == engine]
    assert [r["workload"] for r in runs] == workloads(engine)
    for run in runs:
        assert run["status"] == "ok"
        assert run["wall_s"] > run["work_s"] > 0 and run["cpu_s"] > 0 and run["peak_mb"] > 50


@pytest.mark.slow
def test_engine_dask_equals_pandas_and_times_its_cluster_apart(tmp_path: Path) -> None:
    runs = run_study(tiny_study(tmp_path, ("dask",)), echo=quiet)
    assert [(r["workload"], r["status"]) for r in runs] == [
        ("summary", "ok"),
        ("full", "ok"),
        ("read", "ok"),
    ]
    for run in runs[:2]:
        assert run["startup_s"] > 0 and run["shutdown_s"] >= 0
        assert run["wall_s"] > run["work_s"] + run["startup_s"]


@pytest.mark.slow
def test_engine_dask_limited_records_its_workers_memory(tmp_path: Path) -> None:
    (run,) = run_study(tiny_study(tmp_path, ("dask-limited",), workloads=("full",)), echo=quiet)
    assert (run["workload"], run["status"]) == ("full", "ok")
    assert run["worker_limit_mb"] == round(600 * 2**20 / 1e6, 1)
    assert 50 < run["worker_peak_mb"] < run["worker_limit_mb"] and run["spilled_mb"] >= 0
    table = report.markdown(report.summarise([run]))
    assert "### larger than memory" in table and "| 3,000 | 0 | 629 | 0.0x |" in table


def test_engine_pandas_full_equals_plain_pandas(small_csv: Path, tmp_path: Path) -> None:
    summary, top = pandas_c.full(str(small_csv), str(tmp_path), {})
    want_summary, want_top = reference(small_csv)
    assert_frames_match(summary, want_summary)
    assert_frames_match(top, want_top)
    assert check.compare_tracks(tmp_path / "tracks", want_summary) is None


def test_check_accepts_summation_noise(answer: pd.DataFrame) -> None:
    noisy = answer.copy()
    noisy["tempo_mean"] *= 1 + 1e-12
    assert check.compare(noisy, answer) is None
    assert check.compare((noisy, answer), (answer, answer)) is None


def _mean_off(df: pd.DataFrame) -> pd.DataFrame:
    """One genre's mean 1e-6 off, relatively: far beyond summation noise."""
    df.loc[1, "energy_mean"] *= 1 + 1e-6
    return df


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(_mean_off, id="mean-1e-6"),
        pytest.param(lambda df: df.iloc[1:], id="genre-dropped"),
        pytest.param(lambda df: df.iloc[::-1], id="genre-order"),
        pytest.param(lambda df: df.assign(tracks=df["tracks"] + [0, 1, 0]), id="count"),
        pytest.param(lambda df: df.assign(popularity_max=df["popularity_max"] - 1), id="max"),
        pytest.param(lambda df: df.drop(columns="valence_mean"), id="column-missing"),
        pytest.param(lambda df: df.assign(tracks=df["tracks"].astype(str)), id="count-as-text"),
    ],
)
def test_check_rejects_a_wrong_answer(answer: pd.DataFrame, wrong) -> None:
    assert len(answer) == 3
    assert check.compare(wrong(answer.copy()), answer)
    assert check.compare((answer, wrong(answer.copy())), (answer, answer))


def test_check_compares_text_of_top_tracks(small_csv: Path) -> None:
    _, top = reference(small_csv)
    changed = top.assign(track_id=top["track_id"].where(top.index != 5, "x"))
    assert "track_id" in check.compare(changed, top)


def test_read_workload_queries_each_engines_own_dataset(
    fast_study: tuple[Study, list[dict]],
) -> None:
    pytest.importorskip("duckdb")
    pytest.importorskip("polars")
    study, runs = fast_study
    csv_bytes = input_file(study.data_dir, ROWS, SEED, quiet).stat().st_size
    sizes = {r["engine"]: r["bytes"] for r in runs if r["workload"] == "read"}
    assert set(sizes) == {e for e in FAST if "full" in workloads(e)}
    assert all(0 < size != csv_bytes for size in sizes.values())  # the dataset's bytes
    assert not list(study.output.glob(".datasets-*"))  # written, queried, removed


def test_read_queries_tell_a_wrong_dataset(small_csv: Path, tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    pytest.importorskip("polars")
    pandas_c.full(str(small_csv), str(tmp_path / "good"), {})
    good = tmp_path / "good" / "tracks"
    want = queries.read(str(good), {})
    every, one = want[0], want[1]
    assert len(every) == 12 and one[GENRE].tolist() == [queries.first_genre(str(good))]
    assert one["tracks"].iloc[0] == len(
        pd.read_parquet(good, filters=[(GENRE, "==", one[GENRE].iloc[0]), ("popularity", ">=", 50)])
    )
    assert check.compare(queries.read(str(good), {}), want) is None
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    last = sorted(bad.iterdir())[-1]
    for file in last.glob("*.parquet"):  # one genre's rows, one row fewer
        pd.read_parquet(file).iloc[1:].to_parquet(file, index=False)
    assert "tracks of" in check.compare(queries.read(str(bad), {}), want)


def test_check_counts_parquet_rows_per_genre(small_csv: Path, tmp_path: Path) -> None:
    summary, _ = pandas_c.full(str(small_csv), str(tmp_path), {})
    assert check.compare_tracks(tmp_path / "tracks", summary) is None
    wrong = summary.assign(tracks=summary["tracks"] + (summary.index == 3))
    assert "Parquet rows of" in check.compare_tracks(tmp_path / "tracks", wrong)
    assert "no Parquet" in check.compare_tracks(tmp_path / "nothing", summary)


WRONG_ENGINE = """
from pipeline.benchmark.engines import pandas_c

def summary(path, phases):
    out = pandas_c.summary(path, phases)
    out.loc[1, "energy_mean"] *= 1 + 1e-6
    return out
"""


def test_runner_records_a_wrong_answer_as_failure_without_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wrong_engine.py").write_text(WRONG_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.getenv("PYTHONPATH", "")]))
    study = tiny_study(tmp_path, ("wrong",), workloads=("summary",))
    runs = run_study(study, modules={**ENGINES, "wrong": "wrong_engine"}, echo=quiet)
    assert len(runs) == 1  # the unrecorded pandas run only gave the answer
    assert runs[0]["status"].startswith("mismatch: energy_mean")
    assert runs[0]["wall_s"] is None and runs[0]["peak_mb"] is None
    (row,) = results.read(study.output / "results.csv")
    assert row["status"].startswith("mismatch") and row["wall_s"] == row["cpu_s"] == ""


def test_runner_records_a_crash_with_its_last_line(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken_engine.py").write_text("def summary(path, phases):\n    1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    study = tiny_study(tmp_path, ("pandas", "broken"), workloads=("summary",))
    runs = run_study(study, modules={**ENGINES, "broken": "broken_engine"}, echo=quiet)
    assert [r["status"] for r in runs] == ["ok", "error: ZeroDivisionError: division by zero"]


@pytest.mark.parametrize(
    ("limits", "status"),
    [({"timeout": 0.01}, "timeout after 0.01 s"), ({"memory_limit_mb": 20}, "stopped: memory")],
)
def test_runner_stops_a_run_over_its_limits(tmp_path: Path, limits: dict, status: str) -> None:
    study = tiny_study(tmp_path, ("pandas",), workloads=("summary",), **limits)
    (run,) = run_study(study, echo=quiet)
    assert run["status"].startswith(status) and run["wall_s"] is None


def test_results_file_has_the_fixed_header_and_versions(
    fast_study: tuple[Study, list[dict]],
) -> None:
    study, runs = fast_study
    with open(study.output / "results.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == results.FIELDS
    rows = results.read(study.output / "results.csv")
    assert len(rows) == len(runs)
    for row in rows:
        assert row["pandas_version"] == pd.__version__ and row["dask_version"]
        assert row["python_version"] and row["commit"] and row["date"] and row["platform"]
        assert int(row["cores"]) == os.cpu_count() and float(row["ram_gib"]) > 0
        assert int(row["rows"]) == ROWS and int(row["bytes"]) > 0 and row["repeat"] == "1"


def test_results_file_refuses_another_header(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").write_text("when,what\n")
    with pytest.raises(ValueError, match="another header"):
        run_study(tiny_study(tmp_path, ("pandas",)), echo=quiet)


def test_input_file_is_generated_once(fast_study: tuple[Study, list[dict]]) -> None:
    data_dir = fast_study[0].data_dir
    path = data_dir / f"tracks-{ROWS}-seed{SEED}.csv"
    before = path.stat().st_mtime_ns
    notes: list[str] = []
    assert input_file(data_dir, ROWS, SEED, notes.append) == path.resolve()
    assert path.stat().st_mtime_ns == before and notes == []
    assert len(pd.read_csv(path)) == ROWS


def test_report_shows_speedups_and_failures() -> None:
    def row(engine: str, wall: float | None, status: str = "ok") -> dict:
        times = {"wall_s": wall, "work_s": wall, "cpu_s": wall, "peak_mb": 100.0}
        size = {"workload": "summary", "rows": 1000, "bytes": 2_000_000}
        return {**size, **times, "engine": engine, "status": status}

    rows = [row("pandas", 2.0), row("pool", 4.0), row("dask", 1.0), row("bad", None, "mismatch")]
    table = report.markdown(report.summarise(rows))
    assert "| dask | 1.00 | 1.00-1.00 |" in table and "| 2.00x | 4.00x | ok |" in table
    assert "| bad | - |" in table and "0/1 ok; mismatch |" in table


def test_cli_parses_options_into_a_study(tmp_path: Path) -> None:
    args = ["--rows", "114000,2_000_000", "--engines", "pandas,dask", "--workload", "full"]
    args += ["--repeats", "5", "--warmup", "0", "--output", str(tmp_path), "--data-dir", "d"]
    study = cli.study_of(cli.parser().parse_args(args))
    assert study.rows == (114_000, 2_000_000) and study.engines == ("pandas", "dask")
    assert study.workloads == ("full",) and (study.repeats, study.warmup) == (5, 0)
    assert study.output == tmp_path and study.data_dir == Path("d")
    everything = cli.study_of(cli.parser().parse_args(["--engines", "all"]))
    assert everything.engines == tuple(ENGINES) and everything.workloads == WORKLOADS
    default = cli.study_of(cli.parser().parse_args([]))
    assert default.rows == (114_000, 1_000_000) and (default.repeats, default.warmup) == (3, 1)


@pytest.mark.parametrize(
    "bad",
    [
        ["--rows", "0"],
        ["--rows", "1e6"],
        ["--rows", "1000,"],
        ["--engines", "spark"],
        ["--engines", "pandas,"],
        ["--workload", "etl"],
        ["--repeats", "0"],
        ["--warmup", "-1"],
        ["--timeout", "x"],
        ["--bogus"],
    ],
)
def test_cli_rejects_bad_options_in_one_line(bad: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(bad)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m pipeline.benchmark: error:") and err.count("\n") == 1


def test_cli_runs_a_study_prints_the_table_saves_table_and_plot(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["--rows", str(ROWS), "--engines", "pandas,pool", "--workload", "summary"]
    args += ["--repeats", "2", "--output", str(out), "--data-dir", str(tmp_path), "--seed", "7"]
    assert cli.main(args) == 0
    printed = capsys.readouterr()
    assert "| pandas |" in printed.out and "| pool |" in printed.out
    assert "warm-up 1" in printed.err  # progress goes to stderr, the table alone to stdout
    assert (out / "table.md").read_text() in printed.out
    assert [r["repeat"] for r in results.read(out / "results.csv")] == ["1", "1", "2", "2"]
    pytest.importorskip("matplotlib")
    assert (out / "benchmark.png").stat().st_size > 10_000


@pytest.mark.slow
def test_choices_every_case_gives_the_same_rows(small_csv: Path) -> None:
    """The design benchmark's alternatives do the same work (each on its own cluster)."""
    from pipeline.benchmark.choices import CASES, measure

    rows = {case: measure(str(small_csv), case)[2] for case in CASES}
    assert {rows[c] for c in CASES if c.startswith("gather")} == {11_936}
    assert {rows[c] for c in CASES if c.startswith("summary")} == {12}
    artists = pd.read_csv(small_csv)["artists"].nunique()
    assert {rows[c] for c in CASES if c.startswith("artists")} == {artists}


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_engine_full_rejects_and_deduplicates_like_the_pipeline(
    tmp_path: Path, engine: str
) -> None:
    """Bad values, a value that does not parse and later copies of pairs: each engine's own
    rules give the pipeline's answers and Parquet rows."""
    pytest.importorskip(engine)
    lines = [track_row(i, f"t{i % 40}", f"g{i % 3}", (i * 7) % 100) for i in range(200)]
    lines[5] = lines[5].replace(",200000,", ",-5,")  # duration out of range
    lines[17] = lines[17].replace(",0.5,", ",half,", 1)  # danceability does not parse
    lines[30] = lines[30].replace("1,-5.0,", "1,,", 1)  # missing loudness
    src = write_csv(tmp_path / "t.csv", lines)
    plan = plan_input([str(src)], Config(blocksize=2048), 1)
    built = job.build(plan, TOP, str(tmp_path / "work"))
    result = job.collect(built, list(dask.compute(*built.collections(), scheduler="sync")))
    want_summary, want_top = result.frames[SUMMARY_CSV], result.frames[TOP_CSV]
    assert len(result.rejected) == 3
    # 120 (track, genre) pairs, each twice; a bad row's later copy takes its place
    assert want_summary["tracks"].sum() == 120
    summary, top = load(ENGINES[engine]).full(str(src), str(tmp_path / engine), {})
    assert check.compare(summary, want_summary) is None
    assert check.compare(top, want_top) is None
    assert check.compare_tracks(tmp_path / engine / "tracks", want_summary) is None
    assert (tmp_path / engine / SUMMARY_CSV).is_file()


@pytest.mark.parametrize(
    ("module", "table"),
    [
        ("engines.polars_lazy", "EXPRESSIONS"),
        ("engines.duckdb_sql", "EXPRESSIONS"),
        ("choices", "AGGREGATIONS"),
    ],
)
def test_every_kind_of_statistic_has_an_expression_in_each_engine(module: str, table: str) -> None:
    """A new kind of statistic needs one expression per engine: none may be missing."""
    pytest.importorskip(
        {"engines.polars_lazy": "polars", "engines.duckdb_sql": "duckdb"}.get(module, "dask")
    )
    engine = importlib.import_module(f"pipeline.benchmark.{module}")
    assert set(getattr(engine, table)) == set(KINDS)


def test_phases_sums_task_seconds_per_kind() -> None:
    stream = [
        {
            "key": ("read-block-ab12", 0),
            "startstops": [{"action": "compute", "start": 0, "stop": 2}],
        },
        {
            "key": ("read-block-ab12", 1),
            "startstops": [{"action": "compute", "start": 0, "stop": 1}],
        },
        {
            "key": "share_out-cd34",
            "startstops": [
                {"action": "transfer", "start": 2, "stop": 3},
                {"action": "compute", "start": 3, "stop": 4},
            ],
        },
    ]
    figures = phases._tasks({"threads": 2, "tasks": stream})
    assert figures["per_kind"] == {"read-block": 3.0, "share_out": 1.0}
    assert figures["busy"] == 4.0 / (4 * 2)
    phase_seconds = {"import": 1.0, "cluster_start": 0.1, "compute": 2.0, "write": 0.1}
    runs = [{**phase_seconds, "rest": 0.2, "exit": 0.1}]
    cpu = {"cpu": {"main": 1.5, "tasks": 3.0, "event loop": 0.3}, "until_results": 3.0}
    text = phases.table([{**runs[0], **figures, **cpu}])
    assert "| whole process | 3.50 |" in text and "| read-block | 3.00 | 75% |" in text
    assert "threads busy with tasks: 50% of the task stream's span" in text
    assert "| tasks | 3.00 |\n| event loop | 0.30 |\n| other | 0.00 |" in text
    assert text.endswith("| all, per second of wall time (cores busy) | 1.60 |")


@pytest.mark.slow
def test_phases_of_a_real_run(small_csv: Path) -> None:
    (run,) = phases.measure([str(small_csv), "--dashboard-address", "127.0.0.1:0"], 1)
    assert run["import"] > 0 and run["compute"] > 0 and run["exit"] > 0 and 0 < run["busy"] <= 1
    assert {"read-block", "scatter", "gather", "write_tracks"} <= set(run["per_kind"])
    assert run["cpu"]["main"] > 0 and run["cpu"]["tasks"] > 0 and run["cpu"]["event loop"] > 0
    assert 0 < sum(run["cpu"].values()) <= run["until_results"] * (os.cpu_count() or 1)
