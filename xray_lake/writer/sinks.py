"""Where published tables go: the lake on disk, or memory for tests (one Protocol, two sinks)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from xray_lake.config import Settings
from xray_lake.storage.fs import publish


class Sink(Protocol):
    """Publishes one table's rows for one partition; raises on failure, so nothing is lost silently."""

    def write(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        """Returns the bytes written."""
        ...


class LakeSink:
    """Publishes Parquet files into a lake root, one file per call, atomically."""

    def __init__(self, settings: Settings, writer_id: str) -> None:
        self.root = settings.root
        self.writer_id = writer_id
        self.compression_level = settings.compression_level
        self.fsync = settings.fsync
        self._seq = 0

    def write(self, table_name: str, label: str, date: str, table: pa.Table) -> int:
        self._seq += 1
        path = publish(
            self.root, table_name, label, date, table, self.writer_id, self._seq,
            compression_level=self.compression_level, fsync=self.fsync,
        )
        return os.path.getsize(path)


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

    def table(self, table_name: str) -> pa.Table | None:
        with self._lock:
            parts = list(self.tables[table_name])
        return pa.concat_tables(parts) if parts else None
