"""The notebooks under notebooks/: committed without outputs, and each runs top to bottom."""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

from pipeline.benchmark.results import read as read_results

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
ROWS = 5_000  # five genres: every cell runs, in seconds
BENCH = {  # 03_benchmark: a tiny study (two engines, one 3,000-row file, one run each)
    "PIPELINE_NB_BENCH_ROWS": "3000",
    "PIPELINE_NB_BENCH_ENGINES": "pandas,dask-threads",
    "PIPELINE_NB_BENCH_WORKLOADS": "summary,full",
    "PIPELINE_NB_BENCH_REPEATS": "1",
    "PIPELINE_NB_BENCH_WARMUP": "0",
}


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory: pytest.TempPathFactory):
    """Kernel managers for a kernelspec of *this* interpreter, written to a temp dir.

    The usual ``python3`` spec is looked up on the Jupyter path, where a user's own spec may
    name another Python; this one names ``sys.executable``, so the kernel sees the same
    installed packages as the tests.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "genre-pipeline-tests")
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    assert specs.get_kernel_spec("genre-pipeline-tests").argv[0] == sys.executable

    def make() -> AsyncKernelManager:
        return AsyncKernelManager(kernel_name="genre-pipeline-tests", kernel_spec_manager=specs)

    return make


def test_notebooks_committed_without_outputs() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: cell {cell.id} has outputs"
                assert cell.execution_count is None, f"{path.name}: cell {cell.id} was run"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_manager_factory
) -> None:
    """Generate a small file, run the pipeline (or a tiny benchmark study) and draw everything;
    any error fails the test."""
    data, output = tmp_path / "data" / "tracks.csv", tmp_path / "output"
    bench = tmp_path / "bench"
    monkeypatch.setenv("PIPELINE_NB_DATA", str(data))  # the kernel inherits the environment
    monkeypatch.setenv("PIPELINE_NB_ROWS", str(ROWS))
    monkeypatch.setenv("PIPELINE_NB_OUTPUT", str(output))
    for name, value in BENCH.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIPELINE_NB_BENCH_OUTPUT", str(bench / "results"))
    monkeypatch.setenv("PIPELINE_NB_BENCH_DATA", str(bench / "data"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        km=kernel_manager_factory(),
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    if path.stem == "03_benchmark":
        runs = read_results(bench / "results" / "results.csv")
        measured = {(run["workload"], run["engine"]) for run in runs}
        workloads = BENCH["PIPELINE_NB_BENCH_WORKLOADS"].split(",")
        engines = BENCH["PIPELINE_NB_BENCH_ENGINES"].split(",")
        assert measured == {(w, e) for w in workloads for e in engines}
        assert all(run["status"] == "ok" for run in runs), runs
        assert (bench / "results" / "table.md").exists()
        assert not output.exists()  # nothing else written
        return
    assert data.exists()
    assert (output / "_SUCCESS").exists()
    for name in ("genre_summary.csv", "top_tracks.csv", "manifest.json", "tracks"):
        assert (output / name).exists(), name
