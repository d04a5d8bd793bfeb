"""The Dask dashboard of a run: reachable on its printed 127.0.0.1 URL, a saved report, and
--keep-alive until Ctrl-C."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import popen_run

from pipeline.run import main


def test_run_report_file_holds_the_task_stream(small_csv: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    args = [str(small_csv), "-o", str(tmp_path / "out"), "--report", str(report)]
    assert main([*args, "--dashboard-address", "127.0.0.1:0"]) == 0
    html = report.read_text()
    assert "Task Stream" in html and "read-block" in html and "gather" in html
    assert "cdn.bokeh.org" not in html  # scripts embedded: the file works offline


@pytest.mark.slow
def test_run_keep_alive_serves_dashboard_until_sigint(small_csv: Path, tmp_path: Path) -> None:
    proc = popen_run(small_csv, "-o", tmp_path / "out", "--keep-alive")
    lines = []
    for line in proc.stdout:  # read until the run says it keeps the cluster up
        lines.append(line)
        if line.startswith("keep-alive"):
            break
    url = re.search(r"dashboard (http://127\.0\.0\.1:\d+)/status", "".join(lines)).group(1)
    assert (tmp_path / "out" / "_SUCCESS").exists()
    for page in ("/status", "/individual-progress", "/individual-task-stream"):
        with urllib.request.urlopen(url + page, timeout=30) as response:
            assert response.status == 200
    time.sleep(0.5)
    assert proc.poll() is None  # still serving
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping the cluster" in out
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/status", timeout=5)  # closed with the process
