"""Filesystems of input and output paths and URLs (fsspec), with the local fast paths.

Every module that touches files gets its filesystem here: a local path keeps the fast ways of
its own (pyarrow's local files, ``os.replace``, memory maps), an URL (``s3://...``,
``memory://...``) goes through fsspec.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

# fsspec's options for the filesystem of an input or output URL (s3fs: endpoint_url, key, ...)
StorageOptions = Mapping[str, Any]


def filesystem(
    url: str | os.PathLike, storage_options: StorageOptions | None = None
) -> tuple[AbstractFileSystem, str]:
    """The filesystem of a path or URL, and the path on it. Listings are never cached across
    calls: other threads, processes and machines write the same prefixes."""
    fs, path = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
    fs.invalidate_cache()
    return fs, path


def is_local(fs: AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def arrow_filesystem(fs: AbstractFileSystem) -> pafs.FileSystem | None:
    """For pyarrow: None (its own local filesystem) for local paths, else the fsspec one."""
    return None if is_local(fs) else pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def open_input(path: str, storage_options: StorageOptions | None = None) -> Any:
    """An input file to read in binary, fetching only the bytes read (s3fs would otherwise
    read 50 MiB ahead at every read)."""
    fs, path = filesystem(path, storage_options)
    return fs.open(path, "rb", cache_type="none")


@contextmanager
def atomic_file(
    url: str, storage_options: StorageOptions | None = None
) -> Iterator[tuple[str, pafs.FileSystem | None]]:
    """Yield ``(path, arrow filesystem)`` to write a file that appears whole or not at all.

    Dask may run a task twice, even twice at once (a worker thought lost), and a reader may
    open the file meanwhile: locally the file is written under a temporary name beside it
    and renamed into place, so every reader sees one complete version (an interrupted write
    leaves a hidden ``.*.tmp`` file, removed with the staging directory). An object store
    writes every object whole.
    """
    fs, path = filesystem(url, storage_options)
    if not is_local(fs):
        yield path, arrow_filesystem(fs)
        return
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary, None
        os.replace(temporary, path)
    finally:
        with suppress(FileNotFoundError):
            os.remove(temporary)


def remove_tree(url: str, storage_options: StorageOptions | None = None) -> None:
    """Remove a directory and all in it, if there (errors ignored: this is a clean-up)."""
    fs, path = filesystem(url, storage_options)
    if is_local(fs):
        shutil.rmtree(path, ignore_errors=True)
        return
    with suppress(OSError):
        fs.rm(path, recursive=True)
