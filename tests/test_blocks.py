"""Planning: byte blocks cut at line ends, memory-mapped, and line numbers counted only when
asked for."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import HEADER, track_row, write_csv
from fsspec.utils import read_block

from pipeline.blocks import block_data, count_lines, lines_before, plan_input
from pipeline.config import Config, InputError


def blocks_of(path: Path, blocksize: int) -> list:
    return list(plan_input([str(path)], Config(blocksize=blocksize), 1).blocks)


@pytest.mark.parametrize("blocksize", [1024, 1031, 4096, 1 << 20])
def test_mapped_blocks_are_fsspec_blocks(tmp_path: Path, blocksize: int) -> None:
    """Blocks of a local file are memory-mapped; they must hold the lines fsspec's read_block
    gives (a line after the first line end at or after the offset, to the first line end at
    or after the end), cover the file once, and survive lines longer than a block."""
    lines = [track_row(i, f"t{i}", "jazz", i % 100) for i in range(300)]
    lines[40] = lines[40].replace("Album", "A" * 3000)  # longer than the smallest blocks
    src = write_csv(tmp_path / "tracks.csv", lines)
    blocks = blocks_of(src, blocksize)
    got = []
    for block in blocks:
        with block_data(block) as data:
            got.append(bytes(data))
    with open(src, "rb") as f:
        want = [read_block(f, b.offset, b.length, delimiter=b"\n") for b in blocks]
    assert got == want
    assert b"".join(got) == src.read_bytes()
    assert sum(count_lines(memoryview(g)) for g in got) == len(lines) + 1


def test_plan_of_several_files_numbers_blocks_in_file_order(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", [track_row(i, f"a{i}", "jazz", 5) for i in range(50)])
    b = write_csv(tmp_path / "b.csv", [track_row(i, f"b{i}", "rock", 5) for i in range(50)])
    plan = plan_input([str(a), str(b)], Config(blocksize=2048), 1)
    assert [blk.ordinal for blk in plan.blocks] == list(range(len(plan.blocks)))
    assert next(blk.index for blk in plan.blocks if blk.path == str(b)) == 0
    assert plan.total_bytes == a.stat().st_size + b.stat().st_size
    assert [blk.last for blk in plan.blocks].count(True) == 2


def test_lines_before_counts_earlier_blocks_of_the_same_file(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "t.csv", [track_row(i, f"t{i}", "jazz", 5) for i in range(200)])
    blocks = blocks_of(src, 2048)
    ends = []
    for block in blocks:
        with block_data(block) as data:
            ends.append(count_lines(data))
    assert lines_before(blocks, {1, 4}) == {1: ends[0], 4: sum(ends[:4])}
    src.unlink()  # the first block of a file needs no reading
    assert lines_before(blocks, {0}) == {0: 0}
    assert lines_before(blocks, set()) == {}


def test_a_file_that_shrank_after_planning_is_an_input_error(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "tracks.csv", [track_row(i, f"t{i}", "jazz", 5) for i in range(100)])
    last = blocks_of(src, 1024)[-1]
    src.write_text(HEADER + "\n")
    shrank = "the file shrank while it was read; run again"
    with pytest.raises(InputError, match=shrank), block_data(last):
        pass


def test_aligned_blocks_start_at_record_ends(tmp_path: Path) -> None:
    """Cut by quote parity, every block of a file with line breaks in values holds whole
    records, and the blocks hold the file's bytes once each."""
    rows = [track_row(i, f"t{i}", "jazz", 5) for i in range(400)]
    rows = [r.replace(",Song,", ',"So\nng ""x""",') if i % 3 else r for i, r in enumerate(rows)]
    src = write_csv(tmp_path / "m.csv", rows)
    plan = plan_input([str(src)], Config(blocksize=1024), 1, aligned=frozenset([str(src)]))
    assert len(plan.blocks) > 20 and all(b.quoted_breaks for b in plan.blocks)
    parts = []
    for block in plan.blocks:
        with block_data(block) as data:
            parts.append(bytes(data))
    assert b"".join(parts) == src.read_bytes()
    for part in parts[1:]:
        assert len(list(csv.reader(io.StringIO(part.decode(), newline="")))) >= 1
        assert part.count(b'"') % 2 == 0 and part[:1].isdigit()
