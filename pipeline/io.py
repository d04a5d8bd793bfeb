"""Everything that touches files: planning and parsing CSV blocks, writing outputs, publishing.

The CSV is split into byte blocks at line ends (like ``dask.dataframe.read_csv``), and each
block is parsed by one task. A block is first parsed the fast way (pyarrow, typed, only the
schema's columns, GIL released); if anything in it is wrong, it is parsed again the exact way
(Python's csv module, every field as text with its physical line number) so that every
rejected row keeps its raw fields, its line and a reason.
"""

from __future__ import annotations

import codecs
import csv
import fcntl
import io
import json
import os
import shutil
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.utils import read_block as _read_block

from pipeline import schema

REJECT_COLUMNS = ("file", "line", "reason", "index", *schema.NAMES, "extra")
_TRACKS_PARTITIONING = ds.partitioning(pa.schema([(schema.GENRE, pa.string())]), flavor="hive")
# Dictionary-encode only the columns that repeat (ids and names are nearly unique): faster.
_PARQUET_OPTIONS = ds.ParquetFileFormat().make_write_options(
    use_dictionary=["artists", "album_name", "explicit", "key", "mode", "time_signature"]
)


class InputError(Exception):
    """Bad input or usage: the CLI prints the message as one line and exits 2."""


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


# -- planning -----------------------------------------------------------------------------------


def expand_input(urlpath: str) -> list[str]:
    """The files an input names (a path, a glob or an fsspec URL), sorted, checked readable."""
    fs, _, paths = fsspec.get_fs_token_paths(urlpath)
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


def read_header(path: str, encoding: str = "utf-8") -> tuple[str, ...]:
    """The column names of a file's first line, checked against the schema."""
    try:
        with fsspec.open(path, "rb") as f:
            first = f.readline(1 << 20)
    except PermissionError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror}); check its permissions") from err
    try:
        names = next(csv.reader([first.decode(_sig(encoding)).rstrip("\r\n")]))
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}:1: the header is not {encoding} text; is this a CSV file? (see --encoding)"
        ) from err
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path}:1: duplicate column names {dupes}; each column must appear once")
    missing = [n for n in schema.NAMES if n not in names]
    if missing:
        raise InputError(
            f"{path}:1: missing required columns {missing}; the header must name every column "
            "of the Spotify tracks schema"
        )
    return tuple(names)


def plan_blocks(
    paths: list[str],
    blocksize: int,
    whole: frozenset[str] = frozenset(),
    encoding: str = "utf-8",
) -> list[Block]:
    """Split every file into blocks of about ``blocksize`` bytes, in file order; the files in
    ``whole`` (with line breaks inside values) stay one block each."""
    blocks: list[Block] = []
    for path in paths:
        header = read_header(path, encoding)
        size = file_size(path)
        step = size if path in whole else blocksize
        for index, offset in enumerate(range(0, size, step)):
            length = min(step, size - offset)
            last = offset + length >= size
            blocks.append(Block(path, len(blocks), index, offset, length, header, last, encoding))
    return blocks


def _is_utf8_name(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def _sig(encoding: str) -> str:
    """UTF-8 files may start with a byte-order mark: read it as such."""
    return "utf-8-sig" if _is_utf8_name(encoding) else encoding


def file_size(path: str) -> int:
    with fsspec.open(path, "rb") as f:
        return f.size


def read_block(block: Block) -> bytes:
    """The bytes of a block, as UTF-8: whole lines, from the line starting at or after its
    offset (a file in another, ASCII-compatible encoding is transcoded here)."""
    with fsspec.open(block.path, "rb") as f:
        data = _read_block(f, block.offset, block.length, delimiter=b"\n")
    if _is_utf8_name(block.encoding):
        return data
    try:
        return data.decode(block.encoding).encode("utf-8")
    except UnicodeDecodeError as err:
        raise BadBytes(
            block, data[: err.start].count(b"\n"), f"is not {block.encoding} text"
        ) from err


# -- parsing ------------------------------------------------------------------------------------


def _without_header(data: bytes, block: Block) -> bytes:
    return data[data.find(b"\n") + 1 :] if block.index == 0 else data


def parse_fast(data: bytes, block: Block) -> pa.Table | None:
    """The block's rows as a typed Arrow table, or None when some line has the wrong number of
    fields or a value does not convert (the exact parser then finds which)."""
    if not _is_utf8(data):
        return None  # the exact parser names the line (pyarrow would only print a warning)
    wrong_width: list[int] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        wrong_width.append(row.number or 0)
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(_without_header(data, block)),
            read_options=pacsv.ReadOptions(column_names=list(block.header), use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=schema.ARROW_TYPES,
                include_columns=list(schema.NAMES),
                null_values=[""],
                strings_can_be_null=True,
                true_values=list(schema.TRUE_VALUES),
                false_values=list(schema.FALSE_VALUES),
            ),
        )
    except pa.ArrowInvalid:
        return None
    return None if wrong_width else table


def _is_utf8(data: bytes) -> bool:
    """Whether bytes are valid UTF-8 (Arrow's vectorised check: no copy, no GIL)."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype="int64"))
    as_binary = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        as_binary.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def parse_exact(data: bytes, block: Block) -> pd.DataFrame:
    """Every record of the block as text, with ``line`` (1-based, from the block's start) and,
    for a record with the wrong number of fields, a ``reason``."""
    try:
        text = data.decode("utf-8-sig" if block.index == 0 else "utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n")
        problem = "is not valid UTF-8 text (pass --encoding if the file uses another encoding)"
        raise BadBytes(block, line, problem) from err
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    width = len(block.header)
    records, lines, start = [], [], 1
    try:
        for fields in reader:
            if fields and not (block.index == 0 and start == 1):
                records.append(fields)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        if not block.last:  # a quoted field with a line break straddles the block's end
            raise SplitInQuotes(block.path) from err
        raise BadBytes(block, start - 1, f"cannot be parsed as CSV ({err})") from err
    positions = {name: i for i, name in enumerate(block.header)}
    out = pd.DataFrame({"line": pd.Series(lines, dtype="int64")})
    out["index"] = [r[0] if r else None for r in records] if "" in positions else None
    for name in schema.NAMES:
        i = positions[name]
        out[name] = pd.Series([r[i] if i < len(r) else None for r in records], dtype="object")
    out["extra"] = [",".join(r[width:]) if len(r) > width else None for r in records]
    counts = pd.Series([len(r) for r in records], dtype="int64")
    out["reason"] = pd.Series(pd.NA, index=out.index, dtype="object")
    wrong = counts != width
    out.loc[wrong, "reason"] = f"expected {width} fields, found " + counts[wrong].astype(str)
    return out


class SplitInQuotes(Exception):
    """A block ended inside a quoted field: the file has line breaks inside values and must
    be read as one block (byte-range splitting cannot know where its records end)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


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
            with fsspec.open(self.block.path, "rb") as f:
                for start in range(0, self.block.offset, 1 << 24):
                    line += f.read(min(1 << 24, self.block.offset - start)).count(b"\n")
        return InputError(f"{self.block.path}:{line}: {self.problem}; fix or remove that line")


# -- writing ------------------------------------------------------------------------------------


def write_tracks(table: pa.Table, root: str, basename: str) -> list[str]:
    """Write clean rows as Parquet under ``root``, one directory per genre (hive style, the
    genre percent-encoded so no value can leave ``root``); return the files written."""
    written: list[str] = []
    if not table.num_rows:
        return written
    ds.write_dataset(
        table,
        root,
        format="parquet",
        partitioning=_TRACKS_PARTITIONING,
        file_options=_PARQUET_OPTIONS,
        use_threads=False,  # one block per task already keeps every core busy
        basename_template=basename + "-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_visitor=lambda f: written.append(f.path),
    )
    return written


def read_tracks_file(path: str) -> pd.DataFrame:
    """One Parquet file written by :func:`write_tracks`, its genre column restored."""
    df = pq.read_table(path).to_pandas()
    df[schema.GENRE] = genre_of_file(path)
    return df[list(schema.NAMES)]


def genre_of_file(path: str) -> str:
    """The genre of a Parquet file of :func:`write_tracks`, from its directory name."""
    return unquote(Path(path).parent.name.split("=", 1)[1])


def rewrite_tracks_file(path: str, df: pd.DataFrame) -> None:
    """Replace a Parquet file of :func:`write_tracks` by ``df``'s rows (removed if none)."""
    if df.empty:
        os.remove(path)
    else:
        pq.write_table(
            pa.Table.from_pandas(df.drop(columns=schema.GENRE), preserve_index=False), path
        )


KEY_BUCKETS = 16  # (track_id, genre) keys are spread over this many files per block, by genre


def write_keys(keys: pa.Table, root: str, ordinal: int) -> None:
    """Spill a block's (track_id, track_genre) keys to disk, one Arrow file per bucket; a
    genre always lands in the same bucket (duplicates never cross genres)."""
    genres = pc.dictionary_encode(keys[schema.GENRE]).combine_chunks()
    names = genres.dictionary.to_pylist()
    of_genre = np.array([zlib.crc32(g.encode()) % KEY_BUCKETS for g in names], dtype=int)
    bucket = of_genre[genres.indices.to_numpy()] if len(of_genre) else np.zeros(0, int)
    for b in range(KEY_BUCKETS):
        os.makedirs(f"{root}/{b:02d}", exist_ok=True)
        with pa.OSFile(f"{root}/{b:02d}/part-{ordinal:05d}.arrow", "wb") as f:
            part = keys.filter(pa.array(bucket == b))
            with pa.ipc.new_file(f, part.schema) as writer:
                writer.write_table(part)


def read_keys(root: str, bucket: int, blocks: int) -> list[pa.Table]:
    """The keys of one bucket of every block, in block order."""
    paths = [f"{root}/{bucket:02d}/part-{i:05d}.arrow" for i in range(blocks)]
    return [pa.ipc.open_file(pa.memory_map(p)).read_all() for p in paths]


def count_parquet_rows(root: Path) -> int:
    """Rows in the Parquet files under ``root`` (from their footers)."""
    return ds.dataset(root, format="parquet").count_rows() if root.exists() else 0


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """A CSV output, numbers at full precision (floats round-trip)."""
    df.to_csv(path, index=False)


def write_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")


# -- atomic publish -----------------------------------------------------------------------------


def staging_dir(output: Path) -> Path:
    """A fresh staging directory beside ``output``; stale ones of dead runs are removed first."""
    output.parent.mkdir(parents=True, exist_ok=True)
    for stale in output.parent.glob(f".{output.name}.staging-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    stage = output.parent / f".{output.name}.staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    return stage


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_target(output: Path) -> None:
    """Refuse to replace a directory that is not an earlier output of this pipeline."""
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a directory; choose another --output")
    ours = (output / "_SUCCESS").exists() or (output / "manifest.json").exists()
    if output.is_dir() and any(output.iterdir()) and not ours:
        raise InputError(
            f"{output}: exists and is not a genre-pipeline output; refusing to replace it. "
            "Choose another --output or empty that directory"
        )


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``output`` (a lock file beside it): two runs never write the
    same output at once; the second one refuses at once."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output.parent / f".{output.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{output}: another run is writing this output now; wait for it to finish or "
                "choose another --output"
            ) from None
        yield


def publish(stage: Path, output: Path) -> None:
    """Swap the complete staging directory into place of ``output``."""
    check_output_target(output)
    old = output.parent / f".{output.name}.old-{os.getpid()}"
    if output.exists():
        output.rename(old)
    stage.rename(output)
    shutil.rmtree(old, ignore_errors=True)
