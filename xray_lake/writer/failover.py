"""Lake first, spool when the lake fails: where a written table goes, and how it gets back.

The engine only batches; this sink decides. A table goes to the lake unless the lake failed
lately (exponential backoff, 1 s to 60 s); when the lake refuses it, to the local spool;
once the lake takes tables again, what was spooled (by this writer or an earlier process)
is moved in, exactly once (storage/spool.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from xray_lake.config import Settings
from xray_lake.writer.counts import Counters
from xray_lake.writer.sinks import Sink

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger("xray_lake")
MAX_BACKOFF_S = 60.0


class FailoverSink:
    """Publishes tables to `sink`'s lake or, failing that, its spool; counts into `counters`."""

    def __init__(self, sink: Sink, settings: Settings, counters: Counters) -> None:
        self.sink = sink
        self._settings = settings
        self._counters = counters
        self._retry_at = 0.0  # no lake attempt before this monotonic time
        self._backoff = 1.0
        self._spool_pending: bool | None = None  # None: not checked yet
        self._warned: set[str] = set()

    def lake_ready(self) -> bool:
        return time.monotonic() >= self._retry_at

    def publish(self, name: str, label: str, date: str, table: pa.Table) -> bool:
        """Make `table` durable in the lake or the spool; False when neither takes it."""
        c = self._counters
        if self.lake_ready():
            try:
                nbytes = self.sink.write(name, label, date, table)
            except Exception as exc:
                self._lake_failed(exc)
            else:
                self._retry_at, self._backoff = 0.0, 1.0
                c.rows_written[name] += table.num_rows
                c.files_written += 1
                c.bytes_written += nbytes
                return True
        try:
            self.sink.write_spool(name, label, date, table)
        except Exception as exc:
            self._warn("spool", exc, "cannot write to the spool at %s either (%s: %s); "
                       "records stay in memory, up to max_buffer_bytes",
                       self._settings.spool_dir)
            return False
        c.spooled_rows[name] += table.num_rows
        c.spooled_files += 1
        self._spool_pending = True
        return True

    def drain_spool(self) -> None:
        """Once the lake works, move what was spooled in (by us or an earlier process)."""
        if not self.lake_ready():
            return
        if self._spool_pending is None:
            self._spool_pending = self.sink.spool_pending()
        if not self._spool_pending:
            return
        try:
            result = self.sink.drain_spool()
        except Exception as exc:
            self._lake_failed(exc)
            return
        self._counters.replayed_files += result.files
        self._counters.replayed_rows += result.rows
        if result.failed:
            self._retry_at = time.monotonic() + self._backoff
        else:
            self._spool_pending = False

    def spool_waiting(self) -> bool:
        """Spooled files are known to wait and the lake may be tried (for idle rounds)."""
        return bool(self._spool_pending) and self.lake_ready()

    def _lake_failed(self, exc: Exception) -> None:
        self._counters.write_failures += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self._warn("lake", exc, "cannot write to the lake at %s (%s: %s); records go to the "
                   "local spool and reach the lake when it is back (or `xray-lake replay`)",
                   self._settings.root)

    def _warn(self, where: str, exc: Exception, message: str, *args: object) -> None:
        """Log once per cause (where, exception type, errno), never once per batch."""
        cause = f"{where}:{type(exc).__name__}:{getattr(exc, 'errno', '')}"
        if cause in self._warned:
            return
        self._warned.add(cause)
        logger.warning("xray-lake: " + message + ". The pipeline is unaffected.", *args,
                       type(exc).__name__, exc)
