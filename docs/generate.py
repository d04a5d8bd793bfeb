"""Regenerate the docs' generated parts from their one source each.

    python docs/generate.py          # write them
    python docs/generate.py --check  # exit 1, naming the stale ones, when one would change

- ``docs/generated/outputs.md`` and the outputs table in ``README.md``: ``pipeline.outputs``;
- ``docs/generated/summary-columns.md``: the summary's declaration, ``pipeline.summary``;
- ``docs/generated/studies.md``, ``larger-than-memory.md`` and ``docs/benchmark.png``:
  ``docs/benchmark-results.csv``
  through the benchmark's report code (the plot is the newest study; ``--check`` skips it:
  its bytes depend on matplotlib's version).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from pipeline import outputs, summary  # noqa: E402
from pipeline.benchmark import report, results  # noqa: E402

RESULTS = DOCS / "benchmark-results.csv"
README_TABLE = re.compile(r"(<!-- outputs: docs/generate.py -->\n).*?(<!-- /outputs -->)", re.S)


def pages() -> dict[Path, str]:
    """Every generated text file and its content."""
    rows = results.read(RESULTS)
    readme = (ROOT / "README.md").read_text()
    if not README_TABLE.search(readme):
        raise SystemExit("README.md: the markers of the outputs table are missing")
    return {
        DOCS / "generated" / "outputs.md": outputs.markdown_table() + "\n",
        DOCS / "generated" / "summary-columns.md": summary.markdown_table() + "\n",
        DOCS / "generated" / "studies.md": report.page(rows),
        DOCS / "generated" / "larger-than-memory.md": report.newest_larger_than_memory(rows),
        ROOT / "README.md": README_TABLE.sub(
            lambda m: m.group(1) + outputs.markdown_table() + "\n" + m.group(2), readme
        ),
    }


def plot(path: Path) -> None:
    """The newest study's wall time and peak memory against rows."""
    newest = report.studies(results.read(RESULTS))[-1]
    if not report.plot(report.summarise(newest), path, report.machine(newest)):
        raise SystemExit("matplotlib is not installed: pip install -e '.[bench]'")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/generate.py", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only say which files are stale")
    args = p.parse_args(argv)
    stale = [
        path for path, text in pages().items() if not path.exists() or path.read_text() != text
    ]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is stale: run python docs/generate.py", file=sys.stderr
            )
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pages()[path])
    plot(DOCS / "benchmark.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
