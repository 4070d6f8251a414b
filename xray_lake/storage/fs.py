"""Publishing Parquet files into a lake folder: written under a temp name, fsynced, then renamed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.records.schema import DICTIONARY_COLUMNS, SCHEMA_VERSION
from xray_lake.storage.layout import data_file_name, partition_dir, temp_file_name


def write_parquet(table: pa.Table, path: str, table_name: str, compression_level: int) -> None:
    """The one place that chooses Parquet settings, so every file of a table looks alike."""
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=compression_level,
        use_dictionary=[c for c in DICTIONARY_COLUMNS[table_name] if c in table.column_names],
        write_statistics=True,
    )


def publish(
    root: str,
    table_name: str,
    label: str,
    date: str,
    table: pa.Table,
    writer_id: str,
    seq: int,
    *,
    compression_level: int = 3,
    fsync: bool = True,
) -> str:
    """Make `table` visible in the lake atomically; returns the final path.

    Readers glob `*.parquet`, so a file written under the temp name is invisible until the
    rename, and a process killed halfway leaves only a temp file (cleaned by `doctor`).
    """
    folder = partition_dir(root, table_name, label, date)
    os.makedirs(folder, exist_ok=True)
    name = data_file_name(writer_id, seq, SCHEMA_VERSION)
    final = os.path.join(folder, name)
    temp = os.path.join(folder, temp_file_name(name))
    try:
        write_parquet(table, temp, table_name, compression_level)
        if fsync:
            fsync_file(temp)
        os.replace(temp, final)
        if fsync:
            fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return final


def fsync_file(path: str) -> None:
    """Durability of the bytes before the rename makes them visible."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fsync_file(path)


def iter_files(root: str, table_name: str) -> Iterator[str]:
    """Every published data file of a table, in no particular order."""
    base = os.path.join(root, table_name)
    if not os.path.isdir(base):
        return
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            if name.endswith(".parquet") and not name.startswith("."):
                yield os.path.join(dirpath, name)
