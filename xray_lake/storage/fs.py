"""Publishing Parquet files: local folders by temp name + fsync + rename, object storage by one PUT."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.records.schema import (
    DICTIONARY_COLUMNS,
    ROW_GROUP_ROWS,
    SCHEMA_VERSION,
    SORT_KEYS,
    SORTED_AT_FLUSH,
    promoted_tag,
)
from xray_lake.storage.layout import (
    FIELDS_DIR,
    data_file_name,
    partition_dir,
    partition_rel,
)
from xray_lake.storage.s3_clients import is_remote
from xray_lake.storage.tempfiles import temp_file_name


def write_parquet(table: pa.Table, path: str, table_name: str, compression_level: int,
                  *, sort: bool | None = None) -> None:
    """The one place that chooses Parquet settings, so every file of a table looks alike.

    `sort` defaults to the table's rule at flush time (`SORTED_AT_FLUSH`); compaction sorts all.
    """
    if sort is None:
        sort = table_name in SORTED_AT_FLUSH
    if sort and table.num_rows > 1:
        table = table.sort_by([(key, "ascending") for key in SORT_KEYS[table_name]])
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=compression_level,
        use_dictionary=[c for c in DICTIONARY_COLUMNS[table_name] if c in table.column_names],
        write_statistics=True,
        row_group_size=ROW_GROUP_ROWS[table_name],
    )


def parquet_bytes(table: pa.Table, table_name: str, compression_level: int) -> pa.Buffer:
    """A whole Parquet file in memory (what one PUT to object storage sends)."""
    sink = pa.BufferOutputStream()
    write_parquet(table, sink, table_name, compression_level)
    return sink.getvalue()


def publish_table(
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
) -> tuple[str, int]:
    """Make `table` visible in the lake atomically; returns (final path or URI, bytes).

    Local roots: written under a temp name, fsynced, renamed (`renamed_into_place`). Object
    storage (`s3://`): one PUT of the whole file at its final name, which is visible only
    once complete.
    """
    tag = promoted_tag(table_name, table.schema)
    name = data_file_name(writer_id, seq, SCHEMA_VERSION, tag)
    if is_remote(root):
        from xray_lake.storage.object_store import open_store  # pyarrow's S3 only when needed

        store = open_store(root)
        rel = f"{partition_rel(table_name, label, date)}/{name}"
        data = parquet_bytes(table, table_name, compression_level)
        store.put(rel, data)
        return store.uri(rel), data.size
    folder = partition_dir(root, table_name, label, date)
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, name)
    temp = os.path.join(folder, temp_file_name(name))
    with renamed_into_place(temp, final, fsync=fsync):
        write_parquet(table, temp, table_name, compression_level)
        if tag:
            register_fields_tag(root, tag)
    return final, os.path.getsize(final)


@contextlib.contextmanager
def renamed_into_place(temp: str, final: str, *, fsync: bool) -> Iterator[None]:
    """Around the writing of `temp`: then fsync it, rename it to `final` and fsync the folder;
    on any error delete `temp` instead.

    Readers glob `*.parquet`, so a file under its temp name is invisible until the rename,
    and a process killed halfway leaves only a temp file (cleaned by `doctor`).
    """
    try:
        yield
        if fsync:
            fsync_file(temp)
        os.replace(temp, final)
        if fsync:
            fsync_dir(os.path.dirname(final))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def register_fields_tag(root: str, tag: str) -> None:
    """Note `<root>/_fields/<tag>` before the first file of a new promoted-fields schema is
    visible: an open `xr.Lake` lists that folder per query and rebuilds its views when a tag
    appears (its views read one glob per tag, so a new tag's files are otherwise unseen)."""
    marker = os.path.join(root, FIELDS_DIR, tag)
    if not os.path.exists(marker):
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "ab"):
            pass


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
