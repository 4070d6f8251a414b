"""Where published tables go: the lake on disk, or memory for tests (one Protocol, two sinks)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from xray_lake.config import Settings
from xray_lake.records.schema import concat_unified
from xray_lake.storage.fs import publish_table
from xray_lake.storage.spool import ReplayResult, pending, replay_folder, spool_root


class Sink(Protocol):
    """Publishes one table's rows for one partition; raises on failure, so nothing is lost silently."""

    def write(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        """Returns the bytes written."""
        ...

    def write_spool(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        """Where a batch goes when `write` failed; raises when that fails too."""
        ...

    def spool_pending(self) -> bool:
        """Whether spooled files wait for the lake."""
        ...

    def drain_spool(self) -> ReplayResult:
        """Move spooled files into the lake (exactly once)."""
        ...


class LakeSink:
    """Publishes Parquet files into a lake root (a folder or `s3://`), one file per call, atomically.

    Lake and spool files share one sequence, so a spooled file's name is unique in the lake
    too and replay can publish it under that same name.

    A failed lake write may still have landed (object storage: the PUT reached the server,
    its answer did not reach us). So the next attempt for the same table and partition, to
    the spool or the lake, reuses the failed attempt's name: the file it writes holds the
    same rows or more (the buffer only grows until a write succeeds), and replacing a file
    by one with the same name never doubles a row.
    """

    def __init__(self, settings: Settings, writer_id: str) -> None:
        self.root = settings.root
        self.spool_dir = settings.spool_dir
        self.writer_id = writer_id
        self.compression_level = settings.compression_level
        self.fsync = settings.fsync
        self._seq = 0
        self._retry_seq: dict[tuple[str, str, str], int] = {}

    def _publish(self, root: str, table_name: str, label: str, date: str,
                 table: pa.Table) -> int:
        key = (table_name, label, date)
        seq = self._retry_seq.pop(key, None)
        if seq is None:
            self._seq += 1
            seq = self._seq
        try:
            _path, size = publish_table(
                root, table_name, label, date, table, self.writer_id, seq,
                compression_level=self.compression_level, fsync=self.fsync,
            )
        except BaseException:
            self._retry_seq[key] = seq
            raise
        return size

    def write(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        return self._publish(self.root, table_name, label, date, table)

    def write_spool(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        folder = spool_root(self.spool_dir, self.root)
        return self._publish(folder, table_name, label, date, table)

    def spool_pending(self) -> bool:
        try:
            return bool(pending(spool_root(self.spool_dir, self.root)))
        except OSError:
            return False

    def drain_spool(self) -> ReplayResult:
        return replay_folder(spool_root(self.spool_dir, self.root), self.root, fsync=self.fsync)


@dataclass
class MemorySink:
    """Keeps published tables in memory: what `xray_lake.testing.capture_records` reads."""

    tables: dict[str, list[pa.Table]] = field(
        default_factory=lambda: {"runs": [], "stages": [], "candidates": []}
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        labelled = table.append_column("label", pa.repeat(pa.scalar(label), table.num_rows))
        labelled = labelled.append_column("date", pa.repeat(pa.scalar(date), table.num_rows))
        with self._lock:
            self.tables[table_name].append(labelled)
        return int(table.nbytes)

    def write_spool(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        raise OSError("the memory sink has no spool")

    def spool_pending(self) -> bool:
        return False

    def drain_spool(self) -> ReplayResult:
        return ReplayResult()

    def table(self, table_name: str) -> pa.Table | None:
        with self._lock:
            parts = list(self.tables[table_name])
        return concat_unified(parts) if parts else None  # promoted columns may differ
