"""The batching engine: a bounded queue drained by one worker thread, woken by time, size or flush()."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from xray_lake._internal_errors import report, warn_once
from xray_lake.config import Settings
from xray_lake.records.build import build_run, build_stage
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.storage.compaction.background import (
    BackgroundCompactor,
    start_background_compaction,
)
from xray_lake.writer.admission import wait_for_room
from xray_lake.writer.buffer import WRITE_ORDER, PartitionBuffer
from xray_lake.writer.counts import Counters
from xray_lake.writer.dead_letter import DeadLetters, mark_incomplete, unit_counts
from xray_lake.writer.failover import FailoverSink
from xray_lake.writer.memory import MemoryPlan, release_unused
from xray_lake.writer.shedding import ShedLedger
from xray_lake.writer.sinks import Sink
from xray_lake.writer.ticket import Ticket

logger = logging.getLogger("xray_lake")

_STAGE_ROW_BYTES = 1024  # what a stage or run record costs before its candidates

class _Mark:
    """A soft flush ticket: `callback` runs once everything queued before it is durable (or
    counted as shed), at the writer's own write cadence; it forces no write."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


class Writer:
    """Owns the queue, the worker thread and the per-partition buffers of one process."""

    def __init__(self, settings: Settings, sink: Sink, *, host: str, pid: int, version: str) -> None:
        self.settings = settings
        self.sink = sink
        self.counters = Counters()
        self._failover = FailoverSink(sink, settings, self.counters)
        self._dead_letters = DeadLetters(settings.spool_dir, settings.root)
        self._host, self._pid, self._version = host, pid, version
        self._queue: deque[tuple[object, int]] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified whenever held bytes shrink
        self._shed = ShedLedger(self.counters)
        self._wake = threading.Event()
        self.memory = MemoryPlan.of(settings)
        self._queued_bytes = 0
        self._buffered_bytes = 0
        self._peak_held = 0  # high-water mark of queued + buffered bytes
        self._pending = 0  # estimate of the record being encoded, until it is accounted
        self._since_release = 0  # estimated bytes encoded since freed memory was returned
        self._avg_row_bytes = 300.0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._buffers: dict[tuple[str, str], PartitionBuffer] = {}
        self._last_write = time.monotonic()
        self._failed_since_flush = False
        self._marks: list[_Mark] = []  # drained marks waiting for their records to be durable
        self._hurried = False  # write at the next round (see hurry())
        # Where records go once this writer is closed because it was replaced (configure()):
        # returns False when there is no other writer to take them (exit).
        self.forward: Callable[[RunEvent | StageEvent], bool] | None = None
        self._compactor: BackgroundCompactor | None = None  # started with the worker

    # --- caller's thread -----------------------------------------------------------------

    def submit(self, event: RunEvent | StageEvent) -> None:
        """Queue a record; no I/O. At the memory bound it waits for room (on_full="block", up
        to max_block_s) or sheds the record (counted, and its run is marked incomplete)."""
        if isinstance(event, StageEvent):
            n = event.n_items()
            estimate = event.estimate_bytes(self._avg_row_bytes)
        else:
            n, estimate = 0, _STAGE_ROW_BYTES
        if self._closed and self.forward is not None and self.forward(event):
            return  # replaced by configure(): the record goes to the writer in force
        drop_mode = self.settings.on_full == "drop"

        def refuse() -> str | None:
            if self._closed:
                return "closed"
            if drop_mode and isinstance(event, StageEvent) \
                    and self._shed.lost_part_of(event.run_id):
                return "run_incomplete"  # whole runs where possible
            return None

        def fits() -> bool:  # run rows are always taken: small, and they tell what was shed
            held = self._queued_bytes + self._buffered_bytes
            # a record larger than the hold gets in when nothing else is held
            return isinstance(event, RunEvent) or held + estimate <= self.memory.hold \
                or held == 0

        with self._lock:
            reason = wait_for_room(self._room, self.settings, self.counters, fits=fits,
                                   refuse=refuse, nudge=self._wake.set,
                                   own_thread=threading.current_thread() is self._thread)
            if reason is not None:
                self._drop(reason, event, n)
                return
            held = self._queued_bytes + self._buffered_bytes + estimate
            self._queued_bytes += estimate
            self._peak_held = max(self._peak_held, held)
            self._queue.append((event, estimate))
            wake = self._queued_bytes >= self.memory.wake_at
            start = self._new_thread()
        if start:
            self._start()
        if wake:
            self._wake.set()

    def _new_thread(self) -> bool:
        """(lock held) Create the worker on the first record; True if it must be started."""
        if self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="xray-lake-writer", daemon=True)
        return True

    def _start(self) -> None:
        assert self._thread is not None
        self._thread.start()
        self._compactor = start_background_compaction(self.settings,
                                                       getattr(self.sink, "root", None))

    def mark(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the worker once every record submitted before this call is
        durable in the lake or the spool (or shed and counted); for the writer process's
        acknowledgements. Unlike flush(), it waits for the writer's own cadence."""
        with self._lock:
            self._queue.append((_Mark(callback), 0))
            start = self._new_thread()
        if start:
            self._start()

    def hurry(self) -> None:
        """Write what is buffered at the next round, whatever the cadence says: the writer
        process's client keeps its records until they are written, within its own bound."""
        self._hurried = True
        self._wake.set()

    def shed_run(self, reason: str, run_id: str, n: int) -> None:
        """Count a stage record of `run_id` (with `n` candidates) that was shed before it
        reached this writer (by the application's side of the writer process)."""
        with self._lock:
            self._charge(reason, run_id, 1 + n, n)

    def shed(self, reason: str, event: RunEvent | StageEvent) -> None:
        """Count a record the SDK lost before it reached the queue (an internal error while
        capturing it): flush() then returns False and its run row says 'incomplete'."""
        n = event.n_items() if isinstance(event, StageEvent) else 0
        with self._lock:
            self._drop(reason, event, n)

    def finished(self) -> bool:
        """Closed, and its worker has written (or failed) everything and stopped."""
        thread = self._thread
        return self._closed and (thread is None or (thread.ident is not None
                                                    and not thread.is_alive()))

    def flush(self, timeout: float | None = None) -> bool:
        """Publish everything submitted so far; True only if all of it is now durable."""
        if threading.current_thread() is self._thread:
            return False
        with self._lock:
            if self._thread is None or self.finished():
                ok = not self._failed_since_flush
                self._failed_since_flush = False
                return ok
            ticket = Ticket()
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
            waiting = sum(1 + item.n_items() if isinstance(item, StageEvent) else 1
                          for item, _ in self._queue if not isinstance(item, Ticket | _Mark))
            waiting += sum(b.rows(t) for b in self._buffers.values()
                                             for t in WRITE_ORDER)
            return waiting, self._queued_bytes + self._buffered_bytes

    def _drop(self, reason: str, event: object, n: int) -> None:
        """Shed one record (lock held): counted by reason, and charged to its run, whose row
        then says 'incomplete'."""
        self._charge(reason, event.run_id if isinstance(event, StageEvent) else None, 1 + n, n)

    def _charge(self, reason: str | None, run_id: str | None, records: int, n: int) -> None:
        """(lock held) Count `records` shed for `reason` (None: set aside as dead letters); a
        stage's are charged to its run."""
        self._failed_since_flush = True
        self._shed.charge(reason, run_id, records, n)

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
                if due:
                    self._release_memory()
                if not due and self._failover.spool_waiting():
                    self._failover.drain_spool()
            except Exception as exc:  # the worker must survive anything
                logger.exception("xray-lake: writer error: %s", exc)
                tickets, ok = [], False
            if self._marks and not self._buffers:  # all they waited for is durable or counted
                self._answer_marks()
            for ticket in tickets:
                with self._lock:
                    failed, self._failed_since_flush = self._failed_since_flush, False
                ticket.ok = ok and not failed
                ticket.done.set()
            if self._closed and not self._queue:
                if self._compactor is not None:
                    self._compactor.stop()
                return

    def _answer_marks(self) -> None:
        marks, self._marks = self._marks, []
        for mark in marks:
            try:
                mark.callback()
            except Exception:  # the worker must survive anything
                logger.exception("xray-lake: acknowledging records failed")

    def _due(self) -> bool:
        s = self.settings
        if not self._buffers:
            return False
        rows = sum(b.n_candidates for b in self._buffers.values())
        return (
            self._hurried
            or time.monotonic() - self._last_write >= s.flush_interval_s
            or rows >= s.flush_rows
            or self._buffered_bytes >= self.memory.flush_at
        )

    def _drain(self) -> list[Ticket]:
        """Encode what is queued now, for at most drain_interval_s: under sustained load the
        queue never empties, and the worker must still write files on time and answer flush().

        Stops early once the buffers reach the write threshold, so a burst is written (and
        its memory freed) instead of encoded up to the bound and then dropped. Not when they
        were already past it: writes are failing, and tickets must still be answered.
        """
        tickets: list[Ticket] = []
        stop_at = time.monotonic() + self.settings.drain_interval_s
        below = self._buffered_bytes < self.memory.flush_at
        for _ in range(len(self._queue)):
            if time.monotonic() >= stop_at or (
                below and self._buffered_bytes >= self.memory.flush_at
            ):
                break
            try:
                item, estimate = self._queue.popleft()
            except IndexError:
                break
            if isinstance(item, Ticket):
                tickets.append(item)
                continue
            if isinstance(item, _Mark):
                self._marks.append(item)
                continue
            self._pending = estimate
            try:
                self._add(item)
            except Exception as exc:
                self._fail_record("encode_error", item, exc)
            finally:
                if self._pending:  # not accounted by _add (it failed): release the estimate
                    with self._lock:
                        self._queued_bytes -= self._pending
                        self._room.notify_all()
                    self._pending = 0
            del item  # the caller's objects it references are freed now, not next round
            self._since_release += estimate
            if self._since_release >= self.memory.release_every:
                self._release_memory()
        if self._queue:
            self._wake.set()  # more waits: no idle pause before the next round
        return tickets

    def _add(self, event: object) -> None:
        """Encode one record into its partition buffer.

        Its queued estimate becomes its encoded size in one step (`_account`); admission keeps
        queued + buffered near the hold, and only a record that would take it past the whole
        bound while nothing buffered can be written is dropped and counted.
        """
        if isinstance(event, StageEvent):
            built = build_stage(event, self.settings)
            rows = built.candidate_rows
            added = _STAGE_ROW_BYTES + (rows.nbytes if rows is not None else 0)
            if not self._account(added, event, event.n_items()):
                return
            buf = self._buffer(event.label, event.date)
            buf.stages.append(built.row)
            self.counters.stages_recorded += 1
            self.counters.truncated_values += built.n_truncated
            if built.n_truncated:  # names the stage, each field cut, its cap and the fix
                warn_once(f"truncated:{event.spec.name}", "%s",
                          built.cuts.message(event.spec.name))
            if built.candidate_rows is not None:
                buf.candidates.append(built.candidate_rows)
                buf.n_candidates += built.candidate_rows.num_rows
                self.counters.candidates_recorded += built.candidate_rows.num_rows
                self._avg_row_bytes = 0.9 * self._avg_row_bytes + 0.1 * (
                    built.candidate_rows.nbytes / max(built.candidate_rows.num_rows, 1)
                )
            buf.nbytes += added
            return
        if isinstance(event, RunEvent):
            with self._lock:  # its stages were queued before it: all are in, or shed, by now
                shed = self._shed.settle(event.run_id)
            if shed is not None:
                event.n_stages_shed += shed[0]
                event.n_candidates_shed += shed[1]
            if event.n_stages_shed:
                self.counters.runs_incomplete += 1
            row = build_run(event, self.settings, self._host, self._pid, self._version)
            if not self._account(_STAGE_ROW_BYTES, event, 0):
                return
            buf = self._buffer(event.label, event.date)
            buf.runs.append(row)
            buf.nbytes += _STAGE_ROW_BYTES
            self.counters.runs_recorded += 1
            return
        raise TypeError(f"not a record: {type(event).__name__}")

    def _account(self, added: int, event: object, n: int) -> bool:
        """Swap the pending record's estimate for its encoded bytes, or drop it (False)."""
        with self._lock:
            self._queued_bytes -= self._pending
            self._pending = 0
            self._room.notify_all()
            held = self._queued_bytes + self._buffered_bytes + added
            if held > self.memory.bound and self._buffered_bytes > 0:
                # admission keeps what is held near the hold; an estimate that was far too low,
                # while what is buffered cannot be written (lake and spool refuse), must not
                # take memory past the bound itself
                self._drop("buffer_full", event, n)
                return False
            self._buffered_bytes += added
            self._peak_held = max(self._peak_held, held)
            return True

    def _buffer(self, label: str, date: str) -> PartitionBuffer:
        key = (label, date)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = PartitionBuffer(label, date)
        return buf

    def _fail_record(self, reason: str, item: object, exc: Exception) -> None:
        n = item.n_items() if isinstance(item, StageEvent) else 0
        kept = self._dead_letters.put(item, exc)
        with self._lock:
            if kept:
                self._charge(None, item.run_id if isinstance(item, StageEvent) else None, 1 + n, n)
            else:
                self._drop(reason, item, n)
        try:
            report("writer.encode", exc)
        except Exception:
            logger.exception("xray-lake: could not encode a record")

    def _bury(self, buf: PartitionBuffer) -> None:
        """Dead-letter the rows a table could not hold (counted; their run says 'incomplete')."""
        for name, unit, exc in buf.set_aside:
            run_id, records, n = unit_counts(unit)
            kept = self._dead_letters.put(unit, exc, name)
            marked = name != "runs" and mark_incomplete(buf.runs, run_id, 1, n)
            with self._lock:
                self._charge(None if kept else "encode_error",
                             None if name == "runs" or marked else run_id, records, n)
        buf.set_aside.clear()

    def _write_all(self) -> bool:
        """Publish every buffered partition to the lake, or to the spool when the lake fails.

        True when everything is durable in one or the other; what neither takes stays
        buffered for the next attempt.
        """
        ok = True
        self._hurried = False
        for key, buf in list(self._buffers.items()):
            for name in WRITE_ORDER:
                table = buf.table(name)
                self._bury(buf)
                if table is None:
                    continue
                if not self._failover.publish(name, buf.label, buf.date, table):
                    ok = False  # lake and spool refuse: it stays buffered for the next round
                    break
                buf.clear(name)
            if buf.is_empty():
                self._buffers.pop(key, None)
            # the batches just written are freed (and returned) before the next partition's
            # write adds its working set
            table = None
            self._release_memory()
        self._failover.drain_spool()
        with self._lock:
            self._buffered_bytes = sum(b.nbytes for b in self._buffers.values())
            self._room.notify_all()
            if not ok:
                self._failed_since_flush = True
        self._last_write = time.monotonic()
        self.counters.flushes += 1
        return ok

    def _release_memory(self) -> None:
        self._since_release = 0
        release_unused()

    def stats(self) -> dict[str, Any]:
        waiting, nbytes = self.buffered()
        c = self.counters
        return {
            "buffered_records": waiting,
            "buffered_bytes": nbytes,
            "buffer_limit_bytes": self.memory.hold,
            "peak_buffered_bytes": self._peak_held,
            **c.as_stats(),
            "compaction": self._compactor.stats() if self._compactor is not None else {},
        }
