"""The batching engine: a bounded queue drained by one worker thread, woken by time, size or flush()."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from xray_lake._guard import report, warn_once
from xray_lake.config import Settings
from xray_lake.records.build import build_run, build_stage
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.writer.buffer import WRITE_ORDER, PartitionBuffer
from xray_lake.writer.sinks import Sink

logger = logging.getLogger("xray_lake")

_STAGE_ROW_BYTES = 1024  # what a stage or run record costs before its candidates


@dataclass
class Counters:
    """What `xr.stats()` reports; every record is counted exactly once in one of these."""

    runs_recorded: int = 0
    stages_recorded: int = 0
    candidates_recorded: int = 0
    rows_written: Counter[str] = field(default_factory=Counter)
    files_written: int = 0
    bytes_written: int = 0
    flushes: int = 0
    write_failures: int = 0
    spooled_rows: Counter[str] = field(default_factory=Counter)
    spooled_files: int = 0
    replayed_rows: int = 0
    replayed_files: int = 0
    truncated_values: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class _Ticket:
    """A flush request: resolved once everything queued before it is published (or failed)."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class Writer:
    """Owns the queue, the worker thread and the per-partition buffers of one process."""

    def __init__(self, settings: Settings, sink: Sink, *, host: str, pid: int, version: str) -> None:
        self.settings = settings
        self.sink = sink
        self.counters = Counters()
        self._host, self._pid, self._version = host, pid, version
        self._queue: deque[tuple[object, int]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._queued_bytes = 0
        self._buffered_bytes = 0
        self._avg_row_bytes = 300.0
        self._wake_bytes = max(settings.flush_bytes // 4, 1)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._buffers: dict[tuple[str, str], PartitionBuffer] = {}
        self._last_write = time.monotonic()
        self._failed_since_flush = False
        self._warned: set[str] = set()
        self._retry_at = 0.0  # lake backoff: no lake attempt before this monotonic time
        self._backoff = 1.0
        self._spool_pending: bool | None = None  # None: not checked yet

    # --- caller's thread -----------------------------------------------------------------

    def submit(self, event: RunEvent | StageEvent) -> None:
        """Queue a record; O(1), no I/O. Drops (and counts) it when the memory bound is hit."""
        if isinstance(event, StageEvent):
            n = event.n_items()
            estimate = event.estimate_bytes(self._avg_row_bytes)
        else:
            n, estimate = 0, _STAGE_ROW_BYTES
        with self._lock:
            if self._closed:
                self._drop("closed", event, n)
                return
            if self._queued_bytes + self._buffered_bytes + estimate > self.settings.max_buffer_bytes:
                self._drop("buffer_full", event, n)
                return
            self._queued_bytes += estimate
            self._queue.append((event, estimate))
            wake = self._queued_bytes >= self._wake_bytes
            start = self._thread is None
            if start:
                self._thread = threading.Thread(
                    target=self._run, name="xray-lake-writer", daemon=True
                )
        if start:
            assert self._thread is not None
            self._thread.start()
        if wake:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Publish everything submitted so far; True only if all of it is now durable."""
        if threading.current_thread() is self._thread:
            return False
        with self._lock:
            if self._thread is None:
                ok = not self._failed_since_flush
                self._failed_since_flush = False
                return ok
            ticket = _Ticket()
            self._queue.append((ticket, 0))
        self._wake.set()
        if not ticket.done.wait(timeout):
            return False
        return ticket.ok

    def close(self, timeout: float | None) -> bool:
        """Flush within `timeout`, then refuse further records. Idempotent."""
        ok = self.flush(timeout)
        with self._lock:
            self._closed = True
        self._wake.set()
        return ok

    def buffered(self) -> tuple[int, int]:
        """(records waiting, bytes waiting)."""
        with self._lock:
            waiting = len(self._queue) + sum(b.rows(t) for b in self._buffers.values()
                                             for t in WRITE_ORDER)
            return waiting, self._queued_bytes + self._buffered_bytes

    def _drop(self, reason: str, event: object, n: int) -> None:
        self.counters.dropped[reason] += 1 + n
        self._failed_since_flush = True
        if reason not in self._warned:
            self._warned.add(reason)
            logger.warning(
                "xray-lake: dropping records (%s): buffered data exceeds max_buffer_bytes=%d "
                "or the writer is closed; counted in xr.stats()['dropped']",
                reason, self.settings.max_buffer_bytes,
            )

    # --- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        while True:
            self._wake.wait(s.drain_interval_s)
            self._wake.clear()
            try:
                tickets = self._drain()
                due = bool(tickets) or self._closed or self._due()
                ok = self._write_all() if due else True
                if not due and self._spool_pending and self._lake_ready():
                    self._drain_spool()
            except Exception as exc:  # the worker must survive anything
                logger.exception("xray-lake: writer error: %s", exc)
                tickets, ok = [], False
            for ticket in tickets:
                with self._lock:
                    failed, self._failed_since_flush = self._failed_since_flush, False
                ticket.ok = ok and not failed
                ticket.done.set()
            if self._closed and not self._queue:
                return

    def _due(self) -> bool:
        s = self.settings
        if not self._buffers:
            return False
        rows = sum(b.n_candidates for b in self._buffers.values())
        return (
            time.monotonic() - self._last_write >= s.flush_interval_s
            or rows >= s.flush_rows
            or self._buffered_bytes >= s.flush_bytes
        )

    def _drain(self) -> list[_Ticket]:
        """Encode what is queued now, for at most drain_interval_s: under sustained load the
        queue never empties, and the worker must still write files on time and answer flush()."""
        tickets: list[_Ticket] = []
        stop_at = time.monotonic() + self.settings.drain_interval_s
        for _ in range(len(self._queue)):
            if time.monotonic() >= stop_at:
                break
            try:
                item, estimate = self._queue.popleft()
            except IndexError:
                break
            if isinstance(item, _Ticket):
                tickets.append(item)
                continue
            added = 0
            try:
                added = self._add(item)
            except Exception as exc:
                self._fail_record("encode_error", item, exc)
            with self._lock:
                self._queued_bytes -= estimate
                self._buffered_bytes += added
        if self._queue:
            self._wake.set()  # more waits: no idle pause before the next round
        return tickets

    def _add(self, event: object) -> int:
        """Encode one record into its partition buffer; returns the bytes it now holds.

        The memory bound holds on encoded bytes too: a record that would take the buffer
        past `max_buffer_bytes` (lake and spool both refusing writes) is dropped and counted.
        """
        if isinstance(event, StageEvent):
            built = build_stage(event, self.settings)
            added = _STAGE_ROW_BYTES + (built.batch.nbytes if built.batch is not None else 0)
            if self._over_bound(added, event, event.n_items()):
                return 0
            buf = self._buffer(event.label, event.date)
            buf.stages.append(built.row)
            self.counters.stages_recorded += 1
            self.counters.truncated_values += built.n_truncated
            if built.n_truncated:  # names the stage, each field cut, its cap and the fix
                warn_once(f"truncated:{event.spec.name}", "%s",
                          built.cuts.message(event.spec.name))
            if built.batch is not None:
                buf.candidates.append(built.batch)
                buf.n_candidates += built.batch.num_rows
                self.counters.candidates_recorded += built.batch.num_rows
                self._avg_row_bytes = 0.9 * self._avg_row_bytes + 0.1 * (
                    built.batch.nbytes / max(built.batch.num_rows, 1)
                )
            buf.nbytes += added
            return added
        if isinstance(event, RunEvent):
            row = build_run(event, self.settings, self._host, self._pid, self._version)
            if self._over_bound(_STAGE_ROW_BYTES, event, 0):
                return 0
            buf = self._buffer(event.label, event.date)
            buf.runs.append(row)
            buf.nbytes += _STAGE_ROW_BYTES
            self.counters.runs_recorded += 1
            return _STAGE_ROW_BYTES
        raise TypeError(f"not a record: {type(event).__name__}")

    def _over_bound(self, added: int, event: object, n: int) -> bool:
        with self._lock:
            if self._buffered_bytes + added <= self.settings.max_buffer_bytes:
                return False
            self._drop("buffer_full", event, n)
            return True

    def _buffer(self, label: str, date: str) -> PartitionBuffer:
        key = (label, date)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = PartitionBuffer(label, date)
        return buf

    def _fail_record(self, reason: str, item: object, exc: Exception) -> None:
        n = item.n_items() if isinstance(item, StageEvent) else 0
        with self._lock:
            self._drop(reason, item, n)
        try:
            report("writer.encode", exc)
        except Exception:
            logger.exception("xray-lake: could not encode a record")

    def _write_all(self) -> bool:
        """Publish every buffered partition to the lake, or to the spool when the lake fails.

        True when everything is durable in one or the other; what neither takes stays
        buffered for the next attempt.
        """
        ok = True
        lake_ok = self._lake_ready()
        for key, buf in list(self._buffers.items()):
            for name in WRITE_ORDER:
                table = buf.table(name)
                if table is None:
                    continue
                if lake_ok:
                    try:
                        nbytes = self.sink.write(name, buf.label, buf.date, table)
                    except Exception as exc:
                        lake_ok = False
                        self._lake_failed(exc)
                    else:
                        self._lake_succeeded()
                        self.counters.rows_written[name] += table.num_rows
                        self.counters.files_written += 1
                        self.counters.bytes_written += nbytes
                        buf.clear(name)
                        continue
                try:
                    self.sink.write_spool(name, buf.label, buf.date, table)
                except Exception as exc:
                    ok = False
                    self._warn("spool", exc, "cannot write to the spool at %s either (%s: %s); "
                               "records stay in memory, up to max_buffer_bytes",
                               self.settings.spool_dir)
                    break
                self.counters.spooled_rows[name] += table.num_rows
                self.counters.spooled_files += 1
                self._spool_pending = True
                buf.clear(name)
            if buf.is_empty():
                self._buffers.pop(key, None)
        if lake_ok:
            self._drain_spool()
        with self._lock:
            self._buffered_bytes = sum(b.nbytes for b in self._buffers.values())
            if not ok:
                self._failed_since_flush = True
        self._last_write = time.monotonic()
        self.counters.flushes += 1
        return ok

    def _lake_ready(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _lake_failed(self, exc: Exception) -> None:
        self.counters.write_failures += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 60.0)
        self._warn("lake", exc, "cannot write to the lake at %s (%s: %s); records go to the "
                   "local spool and reach the lake when it is back (or `xray-lake replay`)",
                   self.settings.root)

    def _lake_succeeded(self) -> None:
        self._retry_at = 0.0
        self._backoff = 1.0

    def _drain_spool(self) -> None:
        """After a lake success, move what was spooled (by us or an earlier process) in."""
        if self._spool_pending is None:
            self._spool_pending = self.sink.spool_pending()
        if not self._spool_pending:
            return
        try:
            result = self.sink.drain_spool()
        except Exception as exc:
            self._lake_failed(exc)
            return
        self.counters.replayed_files += result.files
        self.counters.replayed_rows += result.rows
        if result.failed:
            self._retry_at = time.monotonic() + self._backoff
        else:
            self._spool_pending = False

    def _warn(self, where: str, exc: Exception, message: str, *args: object) -> None:
        """Log once per cause (where, exception type, errno), never once per batch."""
        cause = f"{where}:{type(exc).__name__}:{getattr(exc, 'errno', '')}"
        if cause in self._warned:
            return
        self._warned.add(cause)
        logger.warning("xray-lake: " + message + ". The pipeline is unaffected.", *args,
                       type(exc).__name__, exc)

    def stats(self) -> dict[str, Any]:
        waiting, nbytes = self.buffered()
        c = self.counters
        return {
            "buffered_records": waiting,
            "buffered_bytes": nbytes,
            "runs_recorded": c.runs_recorded,
            "stages_recorded": c.stages_recorded,
            "candidates_recorded": c.candidates_recorded,
            "rows_written": dict(c.rows_written),
            "files_written": c.files_written,
            "bytes_written": c.bytes_written,
            "flushes": c.flushes,
            "write_failures": c.write_failures,
            "spooled_rows": dict(c.spooled_rows),
            "spooled_files": c.spooled_files,
            "replayed_rows": c.replayed_rows,
            "replayed_files": c.replayed_files,
            "truncated_values": c.truncated_values,
            "dropped": dict(c.dropped),
            "dropped_total": sum(c.dropped.values()),
        }
