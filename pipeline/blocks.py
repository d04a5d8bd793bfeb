"""Planning: input files -> byte blocks cut at line ends, and the bytes of one block.

The CSV is split into byte blocks at line ends (like ``dask.dataframe.read_csv``); each block
is one partition, read by one task. The client only lists the files and reads their headers;
the tasks read the blocks.
"""

from __future__ import annotations

import codecs
import csv
import mmap
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import dask
import fsspec
import numpy as np
from fsspec.utils import read_block as _read_block

from pipeline import schema
from pipeline.config import MIB, Config, InputError
from pipeline.storage import StorageOptions, filesystem, is_local, open_input


@dataclass(frozen=True)
class Block:
    """A byte range of one input file; its lines belong to no other block."""

    path: str
    ordinal: int  # position among all blocks of all inputs, in file order
    index: int  # position within its file: block 0 holds the header
    offset: int
    length: int
    header: tuple[str, ...]
    last: bool = True  # the file's last block: an unterminated quote here is a real error
    encoding: str = "utf-8"  # of the file; blocks are transcoded to UTF-8 when read
    # cut at record ends (see align_blocks): quoted values in it may hold line breaks
    quoted_breaks: bool = False
    name: str = ""  # how messages and rejected rows name the file, if not ``path``
    # to open ``path`` on the workers; not in the repr: it may hold credentials
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @property
    def label(self) -> str:
        """The file's name in messages and rejected rows."""
        return self.name or self.path


@dataclass(frozen=True)
class Plan:
    """The blocks an input is read in."""

    paths: tuple[str, ...]
    blocks: tuple[Block, ...]
    blocksize: int  # bytes per block (the last of each file may be smaller)
    total_bytes: int

    @property
    def names(self) -> dict[str, str]:
        """The files named otherwise in messages (see ``plan_input``): path -> name."""
        return {b.path: b.name for b in self.blocks if b.name}


def plan_input(
    paths: list[str],
    cfg: Config,
    threads: int,
    whole: frozenset[str] = frozenset(),
    aligned: frozenset[str] = frozenset(),
    worker: tuple[int, int] | None = None,
    names: Mapping[str, str] | None = None,
) -> Plan:
    """Split every file into blocks of ``cfg``'s size for ``threads`` threads (and, if given,
    the memory limit and threads of the most constrained ``worker``), in file order. Files
    with line breaks inside quoted values: those in ``aligned`` are cut at record ends
    (:func:`align_blocks`), those in ``whole`` stay one block each. ``names``: how to name
    files in messages (a decompressed copy by its compressed file)."""
    names = names or {}
    options, encoding = dict(cfg.storage_options), cfg.encoding
    sizes = {path: file_size(path, options) for path in paths}
    blocksize = cfg.blocksize_for(sum(sizes.values()), threads, worker)
    blocks: list[Block] = []
    for path, size in sizes.items():
        header = read_header(path, encoding, options, names.get(path, ""))
        step = size if path in whole else blocksize
        offsets = list(range(0, size, step))
        if path in aligned - whole:
            offsets = align_blocks(path, offsets, size, options)
        for index, offset in enumerate(offsets):
            end = offsets[index + 1] if index + 1 < len(offsets) else size
            blocks.append(
                Block(
                    path,
                    len(blocks),
                    index,
                    offset,
                    end - offset,
                    header,
                    last=end >= size,
                    encoding=encoding,
                    storage_options=options,
                    quoted_breaks=path in aligned,
                    name=names.get(path, ""),
                )
            )
    return Plan(tuple(paths), tuple(blocks), blocksize, sum(sizes.values()))


# -- record ends in a file whose quoted values hold line breaks ---------------------------------


def align_blocks(
    path: str, offsets: list[int], size: int, storage_options: StorageOptions | None = None
) -> list[int]:
    """Block offsets of ``path`` moved onto record ends: each becomes the position of the first
    line end at or after it that lies outside quotes, found from the parity of the quote
    characters before it (RFC 4180: ``""`` inside a quoted value counts twice). One task per
    block counts its quotes and finds its first line end for either parity at its start, so
    the pass runs in parallel and holds a few MiB per task. A block whose range holds no such
    line end (a value longer than the block) joins the one before it. Exact: a cut inside a
    value would make the block before it end inside quotes, which its reader reports."""
    ends = [*offsets[1:], size]
    scans = dask.compute(
        *[
            dask.delayed(_quote_scan, pure=True)(path, start, end, dict(storage_options or {}))
            for start, end in zip(offsets, ends, strict=True)
        ]
    )
    cuts, quotes = [0], 0
    for k, (count, first_line_end) in enumerate(scans):
        cut = first_line_end[quotes % 2] if k else None  # block 0 starts the file: outside
        if cut is not None:
            cuts.append(cut)
        quotes += count
    return cuts


def _quote_scan(
    path: str, start: int, end: int, storage_options: StorageOptions
) -> tuple[int, tuple[int | None, int | None]]:
    """The quote characters in bytes ``start:end`` of a file, and the position of the first
    line end in that range with an even and with an odd number of quotes before it (counted
    from ``start``)."""
    count, found = 0, [None, None]
    with open_input(path, storage_options) as f:
        f.seek(start)
        at = start
        while at < end:
            chunk = np.frombuffer(f.read(min(4 * MIB, end - at)), np.uint8)
            if not len(chunk):
                break
            if None in found:
                line_ends, odd, quotes = line_end_parity(chunk, count)
                for p in (0, 1):
                    hits = line_ends[odd == p]
                    if found[p] is None and len(hits):
                        found[p] = at + int(hits[0])
            else:
                quotes = int(np.count_nonzero(chunk == ord('"')))
            count += quotes
            at += len(chunk)
    return count, (found[0], found[1])


def line_end_parity(chunk: np.ndarray, quotes_before: int) -> tuple[np.ndarray, np.ndarray, int]:
    """For a chunk of CSV bytes: its line ends, whether each has an odd number of quote
    characters before it (``quotes_before`` counted in: odd means inside a quoted value, as
    RFC 4180 doubles a quote inside one), and the chunk's quote characters."""
    quotes = np.flatnonzero(chunk == ord('"'))
    line_ends = np.flatnonzero(chunk == ord("\n"))
    return line_ends, (quotes_before + np.searchsorted(quotes, line_ends)) % 2, len(quotes)


def expand_input(urlpath: str, storage_options: StorageOptions | None = None) -> list[str]:
    """The files an input names (a path, a glob or an fsspec URL), sorted, checked readable."""
    fs, _, paths = fsspec.get_fs_token_paths(urlpath, storage_options=storage_options)
    if not paths:
        raise InputError(f"{urlpath}: no file matches this pattern; check the path or glob")
    for path in paths:
        if fs.isdir(path):
            raise InputError(f"{path}: is a directory; pass a CSV file or a glob like dir/*.csv")
        if not fs.exists(path):
            raise InputError(f"{path}: no such file; pass the path of the tracks CSV")
        if fs.size(path) == 0:
            raise InputError(f"{path}: is empty; expected a CSV with a header and rows")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return sorted(paths) if protocol == "file" else [fs.unstrip_protocol(p) for p in sorted(paths)]


def read_header(
    path: str,
    encoding: str = "utf-8",
    storage_options: StorageOptions | None = None,
    name: str = "",
) -> tuple[str, ...]:
    """The column names of a file's first line (within its first 64 KiB), checked against the
    schema; messages name the file ``name`` if given."""
    label = name or path
    try:
        with open_input(path, storage_options) as f:
            first = f.read(1 << 16).split(b"\n", 1)[0]
    except PermissionError as err:
        raise InputError(
            f"{label}: cannot be read ({err.strerror}); check its permissions"
        ) from err
    try:
        names = next(csv.reader([first.decode(_sig(encoding)).rstrip("\r\n")]))
    except UnicodeDecodeError as err:
        raise InputError(
            f"{label}:1: the header is not {encoding} text; is this a CSV file? (see --encoding)"
        ) from err
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{label}:1: duplicate column names {dupes}; each column must appear once")
    missing = [n for n in schema.NAMES if n not in names]
    if missing:
        raise InputError(
            f"{label}:1: missing required columns {missing}; the header must name every column "
            "of the Spotify tracks schema"
        )
    return tuple(names)


def is_utf8_name(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def _sig(encoding: str) -> str:
    """UTF-8 files may start with a byte-order mark: read it as such."""
    return "utf-8-sig" if is_utf8_name(encoding) else encoding


def file_size(path: str, storage_options: StorageOptions | None = None) -> int:
    with open_input(path, storage_options) as f:
        return f.size


@contextmanager
def block_data(block: Block) -> Iterator[memoryview]:
    """The bytes of a block, as UTF-8: whole lines, from the line after the first line end at
    or after its offset to the first line end at or after its end (as fsspec's ``read_block``).

    A local UTF-8 file is memory-mapped, so the parser reads the page cache directly without a
    copy (docs/design.md); other files are read (and transcoded to UTF-8). The view is valid
    inside the ``with`` only.
    """
    fs, path = filesystem(block.path, block.storage_options)
    if not (is_local(fs) and is_utf8_name(block.encoding)):
        yield memoryview(_read_bytes(block))
        return
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < block.offset + block.length:
            raise InputError(f"{block.label}: the file shrank while it was read; run again")
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        start = 0 if block.offset == 0 else _after_line_end(m, block.offset)
        view = memoryview(m)[start : _after_line_end(m, block.offset + block.length)]
        try:
            yield view
        finally:
            with suppress(BufferError):  # still exported (by a traceback): unmapped when freed
                view.release()
                m.close()


def _after_line_end(m: mmap.mmap, at: int) -> int:
    """The position after the first line end at or after ``at``, or the end of the file."""
    found = m.find(b"\n", at)
    return len(m) if found < 0 else found + 1


def _read_bytes(block: Block) -> bytes:
    with open_input(block.path, block.storage_options) as f:
        data = _read_block(f, block.offset, block.length, delimiter=b"\n")
    if is_utf8_name(block.encoding):
        return data
    try:
        return data.decode(block.encoding).encode("utf-8")
    except UnicodeDecodeError as err:
        raise BadBytes(
            block, data[: err.start].count(b"\n"), f"is not {block.encoding} text"
        ) from err


def count_lines(data: memoryview) -> int:
    """The line ends in a block (numpy, a MiB at a time: 4x faster than ``bytes.count``)."""
    values = np.frombuffer(data, np.uint8)
    chunks = (values[i : i + (1 << 20)] for i in range(0, len(values), 1 << 20))
    return sum(int(np.count_nonzero(chunk == ord("\n"))) for chunk in chunks)


def lines_before(blocks: list[Block], ordinals: set[int]) -> dict[int, int]:
    """For each block in ``ordinals``: the lines of its file before it. Counted by reading
    the file's earlier blocks, only for files with such a block and only up to the last one:
    a run pays for line numbers only when it found rows to reject after a file's first block."""
    offsets: dict[int, int] = {}
    wanted = [b for b in blocks if b.ordinal in ordinals]
    for path in dict.fromkeys(b.path for b in wanted):
        last = max(b.index for b in wanted if b.path == path)
        lines = 0
        for block in (b for b in blocks if b.path == path and b.index <= last):
            offsets[block.ordinal] = lines
            if block.index < last:
                with block_data(block) as data:
                    lines += count_lines(data)
    return {ordinal: offsets[ordinal] for ordinal in ordinals}


class BadBytes(Exception):
    """Bytes of a block that are not CSV text at all; ``line`` counts from the block's start."""

    def __init__(self, block: Block, line: int, problem: str) -> None:
        super().__init__(block, line, problem)  # all three: the error must survive pickling
        self.block, self.line, self.problem = block, line, problem

    def as_input_error(self) -> InputError:
        """The error with the file's own line number (counted only now, for the message)."""
        line = self.line + 1
        if self.block.offset:  # the block starts after the first line end at its offset
            line += 1
            with open_input(self.block.path, self.block.storage_options) as f:
                for start in range(0, self.block.offset, 1 << 24):
                    line += f.read(min(1 << 24, self.block.offset - start)).count(b"\n")
        return InputError(f"{self.block.label}:{line}: {self.problem}; fix or remove that line")
