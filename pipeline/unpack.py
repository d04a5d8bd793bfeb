"""Compressed inputs: recognised by their first bytes (whatever their name), decompressed as a
stream into plain files in the run's work directory, then read in parallel blocks like any
CSV, with the same line numbers.

A compressed stream cannot be split at byte offsets, so one task per compressed file (per CSV
in a zip) decompresses it, 4 MiB at a time (its memory stays small whatever the file's size),
into a file named by what it holds: a task run again writes the same bytes. The plain copy
needs disk space the size of the uncompressed data, under the output's staging directory; it
goes with it at the end of the run.
"""

from __future__ import annotations

import bz2
import lzma
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import dask
import pyarrow as pa
from isal import igzip, isal_zlib

from pipeline.config import MIB, InputError
from pipeline.storage import StorageOptions, atomic_file, open_input

# the first bytes of each format (zip: a local file header, or the end record of an empty zip)
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
}
CHUNK = 4 * MIB
_ERRORS = (OSError, EOFError, zlib.error, isal_zlib.error, lzma.LZMAError, zipfile.BadZipFile)


@dataclass(frozen=True)
class Packed:
    """One compressed CSV: a file, or a CSV inside a zip file."""

    path: str
    kind: str  # a value of MAGIC
    member: str | None = None  # the CSV's name in a zip

    @property
    def name(self) -> str:
        """How messages and rejected rows name it: ``data.zip/dataset.csv`` in a zip."""
        return f"{self.path}/{self.member}" if self.member else self.path


def compression(path: str, storage_options: StorageOptions | None = None) -> str | None:
    """The compression a file's first bytes show, or None for a plain file."""
    with open_input(path, storage_options) as f:
        head = f.read(6)
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def packed_inputs(paths: list[str], storage_options: StorageOptions | None = None) -> list[Packed]:
    """The compressed CSVs among ``paths`` (every CSV of a zip), in the order of ``paths``."""
    found = []
    for path in paths:
        kind = compression(path, storage_options)
        if kind == "zip":
            found += [Packed(path, kind, m) for m in zip_members(path, storage_options)]
        elif kind:
            found.append(Packed(path, kind))
    return found


def zip_members(path: str, storage_options: StorageOptions | None = None) -> list[str]:
    """The CSV files in a zip (by name; a zip holding one file: that file), sorted."""
    try:
        with open_input(path, storage_options) as f, zipfile.ZipFile(f) as archive:
            files = [
                i.filename
                for i in archive.infolist()
                if not i.is_dir() and not i.filename.startswith("__MACOSX/")
            ]
    except _ERRORS as err:
        raise _corrupt(path, "zip", err) from err
    csvs = sorted(n for n in files if n.lower().endswith(".csv"))
    if not csvs and len(files) != 1:
        raise InputError(
            f"{path}: a zip file with no CSV file in it ({len(files)} other files); "
            "pass a zip holding the tracks CSV"
        )
    return csvs or files


def unpack(packed: Packed, target: str, storage_options: StorageOptions | None = None) -> str:
    """Decompress ``packed`` into the file ``target`` (written whole or not at all); return
    ``target``. A truncated or corrupt stream is an :class:`InputError` naming the file."""
    options = dict(storage_options or {})
    try:
        with (
            _stream(packed, options) as source,
            atomic_file(target, options) as (tmp, fs),
            pa.OSFile(tmp, "wb") if fs is None else fs.open_output_stream(tmp) as sink,
        ):
            shutil.copyfileobj(source, sink, CHUNK)
    except _ERRORS as err:
        raise _corrupt(packed.name, packed.kind, err) from err
    return target


@contextmanager
def _stream(packed: Packed, storage_options: StorageOptions) -> Iterator[IO[bytes]]:
    """The decompressed bytes of ``packed``, as a stream (gzip through ISA-L, zstd through
    pyarrow, the others the standard library's; each checks its stream's end and checksum)."""
    with open_input(packed.path, storage_options) as raw:
        if packed.kind == "zip":
            with zipfile.ZipFile(raw) as archive, archive.open(packed.member or "") as member:
                yield member
        elif packed.kind == "zstd":
            with pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd") as stream:
                yield stream
        elif packed.kind == "gzip":
            with igzip.GzipFile(fileobj=raw) as stream:  # ISA-L: 3x zlib (docs/performance.md)
                yield stream
        elif packed.kind == "bzip2":
            with bz2.BZ2File(raw) as stream:
                yield stream
        else:
            with lzma.LZMAFile(raw) as stream:
                yield stream


def _corrupt(name: str, kind: str, err: BaseException) -> InputError:
    return InputError(
        f"{name}: a truncated or corrupt {kind} file ({err or type(err).__name__}); "
        "download or compress it again"
    )


def unpack_inputs(
    paths: list[str], work: str, storage_options: StorageOptions | None = None
) -> tuple[list[str], dict[str, str]]:
    """The files to read for ``paths``: plain files as they are, compressed ones decompressed
    under ``work`` (one task each, on the cluster of the current Dask client); and for each
    decompressed file, the name to show for it."""
    options = dict(storage_options or {})
    packed = {p.name: p for p in packed_inputs(paths, options)}
    targets = {
        name: f"{work}/{i:03d}-{os.path.basename(name)}.csv" for i, name in enumerate(packed)
    }
    done = dask.compute(
        *[dask.delayed(unpack, pure=True)(p, targets[name], options) for name, p in packed.items()]
    )
    names = dict(zip(done, packed, strict=True))
    read: list[str] = []
    for path in paths:
        members = [t for t, name in names.items() if packed[name].path == path]
        read += members or [path]
    return read, names
