"""Reading: a block -> its records; the input as Dask DataFrames of clean and rejected rows.

A block is first parsed the fast way (pyarrow, typed, only the columns asked for, the GIL
released); if anything in it is wrong, it is parsed again the exact way (Python's csv module,
every field as text with its physical line number), so that every rejected row keeps its raw
fields, its line and a reason.

:func:`read_tracks` maps :func:`read_block` over the blocks with ``dask.dataframe.from_map``
(one partition per block). The clean rows and the rejected rows are two frames derived from
those partitions, so computing both in one ``dask.compute`` parses each block once.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline import schema, transforms, unpack
from pipeline.blocks import (
    BadBytes,
    Block,
    Plan,
    block_data,
    expand_input,
    line_end_parity,
    lines_before,
    plan_input,
)
from pipeline.config import MIB, Config

REJECT = "_reject"  # in a block's records: null for a kept row, else the rejected row (JSON)
REJECT_COLUMNS = ("file", "line", "reason", "index", *schema.NAMES, "extra")
_REJECT_RECORD = ("block", *REJECT_COLUMNS)  # a rejected row as :data:`REJECT` holds it


def clean_meta(names: Sequence[str] = schema.NAMES) -> pd.DataFrame:
    """The empty frame of clean rows: the columns ``names``, pyarrow-backed."""
    return pd.DataFrame({n: pd.Series(dtype=pd.ArrowDtype(schema.ARROW_TYPES[n])) for n in names})


def _records_meta(names: Sequence[str]) -> pd.DataFrame:
    return clean_meta(names).assign(**{REJECT: pd.Series(dtype=pd.ArrowDtype(pa.string()))})


def rejected_meta() -> pd.DataFrame:
    """The empty frame of rejected rows: every field as text, ``line`` the file's line."""
    text = {c: pd.Series(dtype="object") for c in REJECT_COLUMNS}
    return pd.DataFrame({**text, "line": pd.Series(dtype="int64")})


# -- one block ----------------------------------------------------------------------------------


def read_block(block: Block, names: tuple[str, ...] = schema.NAMES) -> pd.DataFrame:
    """The records of one block: the columns ``names`` typed (pyarrow-backed) and
    :data:`REJECT`, null for a row that keeps every value rule, else that row as written
    (its typed values then null)."""
    types = {n: schema.ARROW_TYPES[n] for n in names}
    with block_data(block) as data:
        # reading every column, check every byte (the unnamed index column is not parsed)
        text_ok = names != schema.NAMES or _is_utf8(data)
        table = parse_columns(data, block, types) if text_ok else None
        if table is not None and transforms.all_valid(table, _has_nul(data)):
            return _as_records(table, pa.nulls(table.num_rows, pa.string()))
        # line breaks inside quoted values: say so now, not after parsing the block slowly
        # (a file's last block ending inside quotes is an error in the file: parsed below)
        breaks, ends_open = _quoted_line_breaks(data)
        if (ends_open and not block.last) or (breaks and not ends_open and not block.quoted_breaks):
            raise SplitInQuotes(block.path)
        raw = parse_exact(data, block)
    return _exact_records(raw, block, types)


def _as_records(table: pa.Table, reject: pa.Array) -> pd.DataFrame:
    return table.append_column(REJECT, reject).to_pandas(types_mapper=pd.ArrowDtype)


def _exact_records(
    raw: pd.DataFrame, block: Block, types: Mapping[str, pa.DataType]
) -> pd.DataFrame:
    """The records of a block read the exact way: kept rows typed, rejected rows as JSON."""
    typed, reasons = transforms.typed_values(raw)
    reasons = reasons.fillna(transforms.invalid_reasons(typed[list(types)], raw))
    kept = transforms.split_valid(typed[list(types)], reasons)
    # the reasons of the rejected rows only: assigning a longer Series to an empty frame
    # would give the frame that Series' index
    rejected = reasons.notna()
    bad = raw.loc[rejected].assign(reason=reasons[rejected], file=block.label, block=block.ordinal)
    bad = bad[list(_REJECT_RECORD)].astype(object)
    rejects = [json.dumps(r) for r in bad.where(bad.notna(), None).to_numpy().tolist()]
    table = pa.concat_tables(
        [
            transforms.arrow_table(kept, pa.schema(types.items())),
            pa.table({n: pa.nulls(len(rejects), t) for n, t in types.items()}),
        ]
    )
    reject = pa.array([None] * len(kept) + rejects, pa.string())
    return _as_records(table, reject)


def parse_columns(
    data: memoryview, block: Block, types: Mapping[str, pa.DataType], chunk_size: int = 4 * MIB
) -> pa.Table | None:
    """The block's columns named in ``types``, so typed, in chunks of rows from about
    ``chunk_size`` bytes of text, or None when a line has the wrong number of fields or a value
    does not convert (text that is not UTF-8 included: Arrow checks the text columns it reads).

    Chunks of a few MiB parse faster than one chunk of the whole block, their text staying in
    the CPU's cache (measured: docs/design.md).
    """
    wrong_width: list[int] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        wrong_width.append(row.number or 0)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(_without_header(data, block))),
            read_options=pacsv.ReadOptions(
                column_names=list(block.header),
                use_threads=False,
                block_size=chunk_size,
            ),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=block.quoted_breaks, invalid_row_handler=invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict(types),
                include_columns=list(types),
                null_values=[""],
                strings_can_be_null=True,
                true_values=list(schema.TRUE_VALUES),
                false_values=list(schema.FALSE_VALUES),
            ),
        )
    except pa.ArrowInvalid:
        return None
    return None if wrong_width else table


def _without_header(data: memoryview, block: Block) -> memoryview:
    """The block without the file's header line (in the first 64 KiB, as for read_header)."""
    return data[bytes(data[: 1 << 16]).find(b"\n") + 1 :] if block.index == 0 else data


def _has_nul(data: memoryview) -> bool:
    """Is there a NUL byte anywhere in the block? (one pass over the bytes)"""
    return len(data) > 0 and np.frombuffer(data, np.uint8).min() == 0


def _quoted_line_breaks(data: memoryview, chunk: int = 4 * MIB) -> tuple[bool, bool]:
    """Read from a record start, does the block have a line break inside a quoted value, and
    does it end inside one? (on the slow path only)"""
    values = np.frombuffer(data, np.uint8)
    quotes, breaks = 0, False
    for at in range(0, len(values), chunk):
        _, odd, in_chunk = line_end_parity(values[at : at + chunk], quotes)
        breaks = breaks or bool(odd.any())
        quotes += in_chunk
    return breaks, quotes % 2 == 1


def _is_utf8(data: memoryview) -> bool:
    """Whether bytes are valid UTF-8 (Arrow's vectorised check: no copy, no GIL)."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype="int64"))
    as_binary = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        as_binary.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def parse_exact(view: memoryview, block: Block) -> pd.DataFrame:
    """Every record of the block as text, with ``line`` (1-based, from the block's start) and,
    for a record with the wrong number of fields, a ``reason``."""
    data = bytes(view)
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
    """A block ended inside a quoted field: the file has line breaks inside values. Plan it
    again with its blocks cut at record ends (``plan_input(..., aligned={path})``); if that
    fails too (a stray quote), as one block (``whole={path}``)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


# -- records -> clean and rejected rows ---------------------------------------------------------


def kept_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The typed rows of a block's records that keep every value rule (no copy if all do)."""
    reject = records[REJECT]
    rows = records.drop(columns=REJECT)
    return rows[reject.isna()] if reject.notna().any() else rows


def rejected_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows of a block's records, ``line`` counted from the block's start."""
    reject = records[REJECT]
    texts = reject[reject.notna()] if reject.notna().any() else []
    rows = pd.DataFrame([json.loads(t) for t in texts], columns=list(_REJECT_RECORD))
    return rows.astype({"block": "int64", "line": "int64"})[[*REJECT_COLUMNS, "block"]]


def number_lines(rejected: pd.DataFrame, offsets: Mapping[int, int]) -> pd.DataFrame:
    """Rejected rows with ``line`` counted from their file's start (``offsets``: lines before
    each block that has some)."""
    if len(rejected):
        rejected = rejected.assign(line=rejected["line"] + rejected["block"].map(offsets))
    return rejected[list(REJECT_COLUMNS)]


def _lines_before(blocks: tuple[Block, ...], dirty: pd.Series) -> dict[int, int]:
    return lines_before(list(blocks), set(dirty.tolist()))


# -- the input as Dask DataFrames ---------------------------------------------------------------


@dataclass(frozen=True)
class Tracks:
    """An input as Dask DataFrames, one partition per block.

    ``clean``: the typed rows that keep every value rule (pyarrow-backed dtypes; duplicates
    not dropped yet, see :func:`pipeline.transforms.drop_duplicate_tracks`). ``rejected``:
    every row that does not, with its file, line, reason and raw fields. Both are derived from
    ``records``, the block reader's partitions: computed together, each block is parsed once.
    """

    plan: Plan
    records: dd.DataFrame  # both kinds of rows, see read_block

    @cached_property
    def clean(self) -> dd.DataFrame:
        meta = clean_meta([c for c in self.records.columns if c != REJECT])
        return self.records.map_partitions(kept_rows, meta=meta)

    @cached_property
    def rejected(self) -> dd.DataFrame:
        raw = self.records.map_partitions(
            rejected_rows, meta=rejected_meta().assign(block=pd.Series(dtype="int64"))
        )
        dirty = raw["block"].unique(split_out=1)
        offsets = dask.delayed(_lines_before, pure=True)(self.plan.blocks, dirty)
        return raw.map_partitions(number_lines, offsets, meta=rejected_meta())


def read_tracks(source: str | Plan, names: Sequence[str] = schema.NAMES) -> Tracks:
    """Read a tracks CSV (a path, glob or URL, in blocks sized for this machine's cores, or a
    :class:`Plan`) as Dask DataFrames; ``names``: the columns to parse (all by default)."""
    plan = source if isinstance(source, Plan) else default_plan(source)
    names = tuple(names)
    # the columns are pyarrow-backed already: no string conversion layer (an extra task each)
    with dask.config.set({"dataframe.convert-string": False}):
        records = dd.from_map(
            read_block, plan.blocks, args=[names], meta=_records_meta(names), label="read-block"
        )
    return Tracks(plan, records)


def default_plan(source: str) -> Plan:
    """The blocks ``python -m pipeline.run SOURCE`` reads on a cluster of this machine's cores.
    Compressed files are decompressed first (now, into a temporary directory removed when
    Python exits)."""
    work = tempfile.mkdtemp(prefix="pipeline-unpacked-")
    paths, labels = unpack.unpack_inputs(expand_input(source), work)
    if labels:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    else:
        os.rmdir(work)
    return plan_input(paths, Config(input=source), os.cpu_count() or 1, names=labels)
