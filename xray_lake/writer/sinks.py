"""Where published tables go: the lake on disk, or memory for tests (one Protocol, two sinks)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from xray_lake.config import Settings
from xray_lake.storage.fs import publish
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
    """Publishes Parquet files into a lake root, one file per call, atomically.

    Lake and spool files share one sequence, so a spooled file's name is unique in the lake
    too and replay can publish it under that same name.
    """

    def __init__(self, settings: Settings, writer_id: str) -> None:
        self.root = settings.root
        self.spool_dir = settings.spool_dir
        self.writer_id = writer_id
        self.compression_level = settings.compression_level
        self.fsync = settings.fsync
        self._seq = 0

    def _publish(self, root: str, table_name: str, label: str, date: str,
                 table: pa.Table) -> int:
        self._seq += 1
        path = publish(
            root, table_name, label, date, table, self.writer_id, self._seq,
            compression_level=self.compression_level, fsync=self.fsync,
        )
        return os.path.getsize(path)

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
        return pa.concat_tables(parts) if parts else None
