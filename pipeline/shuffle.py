"""Every genre's rows gathered in one partition, through scratch files: how a run drops the
duplicates across partitions exactly while memory stays flat.

A duplicate repeats a (track_id, track_genre) pair seen earlier in the file, maybe in another
block, so each genre's rows must meet. Each block task writes its rows, sorted by genre, to one
scratch file (Arrow IPC, uncompressed, each genre in record batches of its own), named by the
block, so a task that Dask runs again writes the same bytes under the same name. After the
last block, one small task shares the genres out to the gather tasks, largest first to the
least loaded; each gather task reads only its genres' batches, block by block in file order,
and keeps the first row of every track. The result is a Dask DataFrame with each genre whole in
one partition. Dask's own ``DataFrame.shuffle(on="track_genre")`` took more time and several
times the memory (``python -m pipeline.benchmark.choices``; docs/design.md).
"""

from __future__ import annotations

import itertools
from contextlib import ExitStack

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline.memory import release_arrow_memory
from pipeline.read import clean_meta
from pipeline.schema import GENRE, TRACK_ID
from pipeline.storage import StorageOptions, atomic_file, filesystem, is_local
from pipeline.transforms import arrow_table, first_occurrences, genre_parts

SCATTER_PARTS = 4  # copies a block is sorted by genre in (measured: docs/design.md)
PIECES_META = pd.DataFrame(
    {
        GENRE: pd.Series(dtype="object"),
        "block": pd.Series(dtype="int64"),
        "path": pd.Series(dtype="object"),
        "batch": pd.Series(dtype="int64"),  # the genre's first record batch in the file
        "batches": pd.Series(dtype="int64"),
        "rows": pd.Series(dtype="int64"),
    }
)


def scatter(
    clean: pd.DataFrame,
    root: str,
    storage_options: StorageOptions | None = None,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    """Write a block's clean rows, sorted by genre, to one scratch file named by the block
    (each genre in record batches of its own); return where each genre's rows are in it:
    genre, block, path, first batch, batches, rows. ``partition_info`` (from Dask) numbers the
    block. Repeated (track_id, genre) pairs are all written: the gather drops them, within a
    block as across blocks (dropping them here as well would hash every track_id twice)."""
    block = partition_info["number"] if partition_info else 0
    path = f"{root}/{block:06d}.arrow"
    table = arrow_table(clean)
    pieces = []
    if table.num_rows:
        with atomic_file(path, storage_options) as (target, fs):
            sink = pa.OSFile(target, "wb") if fs is None else fs.open_output_stream(target)
            with sink, ipc.new_file(sink, table.schema) as writer:
                pieces = [(genre, block, path, *at) for genre, *at in _write_sorted(table, writer)]
        release_arrow_memory()  # the sorted copies
    return pd.DataFrame(pieces, columns=list(PIECES_META.columns)).astype(PIECES_META.dtypes)


def _write_sorted(table: pa.Table, writer: ipc.RecordBatchFileWriter) -> list[tuple]:
    """Write the table sorted by genre, each genre in record batches of its own, in a few copies
    of whole genres (not one of the whole table); return (genre, first batch, batches, rows)."""
    written = []
    for part, runs in genre_parts(table, part_rows=-(-table.num_rows // SCATTER_PARTS)):
        for genre, start, rows in runs:
            first = writer.stats.num_record_batches
            for batch in part.slice(start, rows).to_batches():
                writer.write_batch(batch)
            written.append((genre, first, writer.stats.num_record_batches - first, rows))
    return written


def share_out(pieces: pd.DataFrame, tasks: int) -> pd.DataFrame:
    """The pieces with the ``bucket`` (gather task) of their genre: genres by size, largest
    first, each to the least loaded task (deterministic: ties go by genre name)."""
    rows = pieces.groupby(GENRE, sort=True)["rows"].sum()
    load, bucket = [0] * tasks, {}
    for genre, size in sorted(rows.items(), key=lambda g: (-g[1], g[0])):
        bucket[genre] = least = load.index(min(load))
        load[least] += size
    routed = pieces.assign(bucket=pieces[GENRE].map(bucket).astype("int64"))
    return routed.sort_values(["bucket", GENRE, "block"], kind="stable", ignore_index=True)


def gather(
    pieces: pd.DataFrame, names: tuple[str, ...], storage_options: StorageOptions | None = None
) -> pd.DataFrame:
    """The rows (columns ``names``) of the pieces' genres, genre by genre in file order,
    without the later copies of a track. Only the pieces' record batches are read (copied
    out of the page cache: nothing stays mapped, so memory is what the partition holds)."""
    tables = []
    with ExitStack() as files:
        readers = {
            path: ipc.open_file(files.enter_context(_open(path, storage_options)))
            for path in pieces["path"].unique()
        }
        # one sort, plain tuples: a pandas group-by, sort and itertuples per genre cost about
        # 1 ms each under Python's lock (docs/performance.md)
        ordered = pieces.sort_values([GENRE, "block"], kind="stable")
        listed = ordered[[GENRE, "path", "batch", "batches"]].itertuples(index=False, name=None)
        for _, runs in itertools.groupby(listed, key=lambda piece: piece[0]):
            batches = [
                readers[path].get_batch(i)
                for _, path, start, count in runs
                for i in range(start, start + count)
            ]
            rows = pa.Table.from_batches(batches)
            first = first_occurrences(rows[TRACK_ID])
            tables.append(rows if first.all() else rows.filter(pa.array(first)))
    if not tables:
        return clean_meta(names)
    unique = pa.concat_tables(tables).to_pandas(types_mapper=pd.ArrowDtype)
    release_arrow_memory()  # the rows read before the later copies of tracks were dropped
    return unique


def _open(url: str, storage_options: StorageOptions | None) -> pa.NativeFile:
    """A scratch file to read from (random access: only the batches asked for are read)."""
    fs, path = filesystem(url, storage_options)
    return pa.OSFile(path) if is_local(fs) else pa.PythonFile(fs.open(path, "rb"), mode="r")


def by_genre(
    clean: dd.DataFrame, root: str, tasks: int, storage_options: StorageOptions | None = None
) -> tuple[dd.DataFrame, dd.DataFrame]:
    """``clean`` without later copies of a track, each genre whole in one of ``tasks``
    partitions; and the pieces written under ``root`` (rows per genre and block)."""
    options = dict(storage_options or {})
    pieces = clean.map_partitions(scatter, root, options, partition_info=True, meta=PIECES_META)
    routed = pieces.repartition(npartitions=1).map_partitions(
        share_out, tasks, meta=PIECES_META.assign(bucket=pd.Series(dtype="int64"))
    )
    # exact routing: bucket b becomes partition b (sorted, known divisions; no hashing)
    buckets = routed.set_index("bucket", sorted=True, divisions=[0, tasks])
    buckets = buckets.repartition(divisions=list(range(tasks + 1)))
    names = tuple(clean.columns)
    unique = buckets.map_partitions(gather, names, options, meta=clean_meta(names))
    return unique, pieces
