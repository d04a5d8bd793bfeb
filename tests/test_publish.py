"""The output's transaction: the lock and the staging directory on entry, one publish, the
staging directory gone and the lock released on every exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import InputError
from pipeline.publish import Transaction, output_lock


def test_transaction_publishes_once_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Transaction(str(out)) as tx:
        Path(tx.path("_SUCCESS")).write_text("")
        assert Path(tx.stage).is_dir() and not out.exists()
        tx.publish()
        with pytest.raises(RuntimeError, match="published already"):
            tx.publish()
    assert (out / "_SUCCESS").exists() and not list(tmp_path.glob(".out.staging-*"))
    with output_lock(out):  # released: another run may take it
        pass


def test_transaction_failure_leaves_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "_SUCCESS").write_text("previous")
    with pytest.raises(ValueError, match="boom"), Transaction(str(out)) as tx:
        Path(tx.path("genre_summary.csv")).write_text("half")
        raise ValueError("boom")
    assert (out / "_SUCCESS").read_text() == "previous"
    assert not list(tmp_path.glob(".out.staging-*"))


def test_transaction_refuses_a_locked_or_foreign_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_lock(out), pytest.raises(InputError, match="another run is writing"):
        Transaction(str(out)).__enter__()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="is not a genre-pipeline output"):
        Transaction(str(tmp_path / "home")).__enter__()
    assert not list(tmp_path.glob(".*.staging-*"))
