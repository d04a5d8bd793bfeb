"""Writing the outputs into a staging directory, and publishing it whole.

Locally: a staging directory beside the output, swapped in by two renames, under a lock.
Object stores have neither renames nor locks: the old output loses its _SUCCESS first, then
its objects; the staged objects are copied into place, _SUCCESS last (docs/object-storage.md).
The Parquet files of ``tracks/`` are written by Dask tasks; every such file is named by what
it holds, so a task that Dask runs again writes the same bytes under the same name.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow.parquet as pq
from fsspec.spec import AbstractFileSystem

from pipeline.config import InputError
from pipeline.memory import release_arrow_memory
from pipeline.schema import GENRE
from pipeline.storage import (
    StorageOptions,
    arrow_filesystem,
    atomic_file,
    filesystem,
    is_local,
    remove_tree,
)
from pipeline.transforms import arrow_table, genre_groups

# Dictionary encoding for every column but the nearly unique track_id, zstd level 1: the
# smallest dataset and the fastest queries for no more write CPU (measured: docs/design.md).
_PLAIN = ("track_id",)
_COMPRESSION = {"compression": "zstd", "compression_level": 1}
WRITTEN_META = pd.DataFrame(
    {
        GENRE: pd.Series(dtype="object"),
        "path": pd.Series(dtype="object"),
        "rows": pd.Series(dtype="int64"),
    }
)


# -- the tracks dataset -------------------------------------------------------------------------


def write_tracks(
    rows: pd.DataFrame,
    root: str,
    storage_options: StorageOptions | None = None,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    """Write clean rows as Parquet under ``root``, one directory per genre (hive style, the
    genre percent-encoded so no value can leave ``root``), one file per genre and partition
    (``part-NNNNN.parquet``, numbered by ``partition_info``); return what was written
    (genre, path, rows).

    One ``pq.write_table`` per file: unlike ``pyarrow.dataset.write_dataset``, calls from
    several threads at once run in parallel (measured: docs/design.md).
    """
    number = partition_info["number"] if partition_info else 0
    # plain Arrow types, no pandas metadata: each reader gets its own default types back
    table = arrow_table(rows).replace_schema_metadata(None)
    dictionary = [c for c in table.column_names if c not in (GENRE, *_PLAIN)]
    written = []
    for genre, of_genre in genre_groups(table):
        path = f"{root}/{GENRE}={quote(genre, safe='')}/part-{number:05d}.parquet"
        data = of_genre.drop_columns([GENRE])
        with atomic_file(path, storage_options) as (target, fs):
            pq.write_table(data, target, use_dictionary=dictionary, filesystem=fs, **_COMPRESSION)
        written.append((genre, path, of_genre.num_rows))
    release_arrow_memory()  # the Parquet writers' buffers
    return pd.DataFrame(written, columns=list(WRITTEN_META.columns)).astype(WRITTEN_META.dtypes)


def count_parquet_rows(root: str | Path, storage_options: StorageOptions | None = None) -> int:
    """Rows in the Parquet files under ``root``, from their footers one file at a time
    (``pyarrow.dataset`` would hold every file's metadata at once: docs/design.md)."""
    fs, root = filesystem(root, storage_options)
    if not fs.exists(root):
        return 0
    files = [f for f in fs.find(root) if f.endswith(".parquet")]
    return sum(pq.read_metadata(f, filesystem=arrow_filesystem(fs)).num_rows for f in files)


# -- small outputs ------------------------------------------------------------------------------


def write_csv(df: pd.DataFrame, url: str, storage_options: StorageOptions | None = None) -> None:
    """A CSV output, numbers at full precision (floats round-trip)."""
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "wb") as f:
        df.to_csv(f, index=False)


def write_text(text: str, url: str, storage_options: StorageOptions | None = None) -> None:
    fs, path = filesystem(url, storage_options)
    fs.pipe_file(path, text.encode())


def write_json(obj: dict, url: str, storage_options: StorageOptions | None = None) -> None:
    write_text(json.dumps(obj, indent=2, default=str) + "\n", url, storage_options)


def read_head(url: str, size: int, storage_options: StorageOptions | None = None) -> str:
    """The first ``size`` bytes of a file as text ('' when it is not there)."""
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        return ""
    with fs.open(path, "rb") as f:
        return f.read(size).decode("utf-8", errors="replace")


# -- staging and the atomic publish -------------------------------------------------------------


class Transaction:
    """An output's lock, staging directory and publish, as one context: entering takes the
    lock and makes the staging directory (refusing a directory that is not our output), the
    run writes into :attr:`stage`, :meth:`publish` puts it in place of the output once, and
    leaving removes whatever is left of the staging directory and releases the lock, on
    every path."""

    def __init__(self, output: str, storage_options: StorageOptions | None = None) -> None:
        self.output, self.storage_options = output, dict(storage_options or {})
        self.stage = ""
        self.published = False
        self._exit = ExitStack()

    def __enter__(self) -> Transaction:
        if self.stage:
            raise RuntimeError(f"{self.output}: this transaction was entered already")
        check_output_target(self.output, self.storage_options)
        with ExitStack() as entering:
            entering.enter_context(output_lock(self.output, self.storage_options))
            self.stage = staging_dir(self.output, self.storage_options)
            entering.callback(remove_tree, self.stage, self.storage_options)  # if published: gone
            self._exit = entering.pop_all()
        return self

    def path(self, name: str) -> str:
        """Where ``name`` is staged."""
        return f"{self.stage}/{name}"

    def publish(self) -> None:
        """Put the complete staging directory in place of the output (once)."""
        if self.published:
            raise RuntimeError(f"{self.output}: published already")
        publish(self.stage, self.output, self.storage_options)
        self.published = True

    def __exit__(self, *exc: object) -> None:
        self._exit.close()


def staging_dir(output: str | Path, storage_options: StorageOptions | None = None) -> str:
    """A fresh staging directory beside ``output``; locally, stale ones of dead runs are
    removed first (elsewhere no pid tells a dead run's prefix from a live one's)."""
    fs, path = filesystem(output, storage_options)
    if not is_local(fs):
        parent, name = posixpath.split(path)
        staging = f".{name}.staging-{uuid.uuid4().hex[:12]}"
        return fs.unstrip_protocol(posixpath.join(parent, staging))
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    for stale in output.parent.glob(f".{output.name}.staging-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    stage = output.parent / f".{output.name}.staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    return str(stage)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_target(output: str | Path, storage_options: StorageOptions | None = None) -> None:
    """Refuse to replace a directory that is not an earlier output of this pipeline."""
    fs, path = filesystem(output, storage_options)
    if not posixpath.dirname(path):
        raise InputError(f"{output}: is a bucket; choose a prefix in it, like s3://bucket/out")
    if fs.exists(path) and not fs.isdir(path):
        raise InputError(f"{output}: exists and is not a directory; choose another --output")
    ours = fs.exists(f"{path}/_SUCCESS") or fs.exists(f"{path}/manifest.json")
    if fs.isdir(path) and fs.ls(path, detail=False) and not ours:
        raise InputError(
            f"{output}: exists and is not a genre-pipeline output; refusing to replace it. "
            "Choose another --output or empty that directory"
        )


@contextmanager
def output_lock(
    output: str | Path, storage_options: StorageOptions | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on ``output`` (a lock file beside it): two runs never write the
    same output at once; the second one refuses at once. Object stores have no locks: there,
    no lock is taken."""
    fs, path = filesystem(output, storage_options)
    if not is_local(fs):
        yield
        return
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output.parent / f".{output.name}.lock", "w") as lock:
        if not _try_lock(lock):
            raise InputError(
                f"{output}: another run is writing this output now; wait for it to finish or "
                "choose another --output"
            )
        yield


def _try_lock(file) -> bool:
    """Take an exclusive lock on an open file without waiting: fcntl on POSIX, msvcrt on
    Windows (imported here: ``import pipeline`` works where either is missing)."""
    try:
        import fcntl
    except ImportError:
        import msvcrt

        try:
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


UNPACKED = "_input"  # in the staging directory: the plain copies of compressed inputs


def keep_tracks(work: str, stage: str, storage_options: StorageOptions | None = None) -> None:
    """The final step of a run's writes: move the Parquet files of the attempt that completed
    (``work``) to ``stage``/tracks, without the temporary files of writes a killed worker left
    behind, and remove every attempt's directory (scratch files and abandoned attempts) and
    the plain copies of compressed inputs."""
    fs, work = filesystem(work, storage_options)
    stage = filesystem(stage, storage_options)[1]
    tracks = f"{work}/tracks"
    if not is_local(fs):  # no renames on object stores
        _copy(fs, fs.find(tracks), tracks, f"{stage}/tracks")
    elif fs.exists(tracks):
        for leftover in Path(tracks).rglob(".*.tmp"):
            leftover.unlink()
        os.rename(tracks, f"{stage}/tracks")
    for scratch in [*fs.glob(f"{stage}/_attempt-*"), *fs.glob(f"{stage}/{UNPACKED}")]:
        fs.rm(scratch, recursive=True)


def publish(stage: str, output: str | Path, storage_options: StorageOptions | None = None) -> None:
    """Put the complete staging directory in place of ``output``."""
    check_output_target(output, storage_options)
    fs, path = filesystem(output, storage_options)
    staged = filesystem(stage, storage_options)[1]
    if not is_local(fs):
        _publish_by_copying(fs, staged, path)
        return
    output, stage = Path(path), Path(staged)
    old = output.parent / f".{output.name}.old-{os.getpid()}"
    if output.exists():
        output.rename(old)
    stage.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def _publish_by_copying(fs: AbstractFileSystem, stage: str, output: str) -> None:
    """Publish on an object store: the old output is marked incomplete (its _SUCCESS deleted)
    before anything else changes, and the new one complete (_SUCCESS) after all else is in.
    A manifest.json stays throughout, so a publish cut short still counts as our output."""
    if fs.exists(f"{output}/_SUCCESS"):
        fs.rm_file(f"{output}/_SUCCESS")
    old = [f for f in fs.find(output) if f != f"{output}/manifest.json"]
    if old:
        fs.rm(old)
    first, last = f"{stage}/manifest.json", f"{stage}/_SUCCESS"
    for files in ([first], [f for f in fs.find(stage) if f not in (first, last)], [last]):
        _copy(fs, files, stage, output)
    fs.rm(stage, recursive=True)


def _copy(fs: AbstractFileSystem, files: list[str], src: str, dst: str) -> None:
    """Copy ``files`` under ``src`` to the same places under ``dst`` (s3fs: concurrently)."""
    if files:
        fs.copy(files, [dst + f[len(src) :] for f in files])
