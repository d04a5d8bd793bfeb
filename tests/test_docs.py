"""The documentation: the generated parts current, the README short and its links alive, the
site built with warnings as errors and every internal link resolving."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def generate_module():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_current(capsys: pytest.CaptureFixture) -> None:
    """The outputs table, the summary's columns and the studies equal what their sources give
    now (run `python docs/generate.py` after changing a declaration or the results file)."""
    assert generate_module().main(["--check"]) == 0, capsys.readouterr().err


def test_generated_pages_name_every_output_and_statistic() -> None:
    from pipeline.outputs import CONTRACT
    from pipeline.summary import SUMMARY

    text = (ROOT / "docs" / "generated" / "outputs.md").read_text()
    assert all(f"`{name}" in text for name in CONTRACT)
    columns = (ROOT / "docs" / "generated" / "summary-columns.md").read_text()
    assert [re.match(r"\| `(\w+)`", line)[1] for line in columns.splitlines()[2:]] == [
        s.name for s in SUMMARY
    ]


def test_readme_is_a_short_front_door_with_working_links() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")}
    assert {"index.html", "api.html", "performance.html", "outputs.html"} <= pages
    assert "pipeline.summary.summarise" in (out / "api.html").read_text()
    for page in pages:  # every link inside the site leads to a page that exists
        html = (out / page).read_text()
        for href in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', html):
            assert (out / page).parent.joinpath(href).resolve().exists(), (page, href)
