"""The batching loop: one worker thread drains the intake and writes the buffers when due.

It is woken by time, size or flush(); what the lake refuses goes to the spool
(writer/failover.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from xray_lake.config import Settings
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.storage.compaction.background import (
    BackgroundCompactor,
    start_background_compaction,
)
from xray_lake.writer.admission import CLOSED, forward_or_shed
from xray_lake.writer.buffer import WRITE_ORDER, PartitionBuffer
from xray_lake.writer.counts import Counters
from xray_lake.writer.dead_letter import DeadLetters, mark_incomplete, unit_counts
from xray_lake.writer.failover import FailoverSink
from xray_lake.writer.intake import Intake
from xray_lake.writer.memory import release_unused
from xray_lake.writer.sinks import Sink
from xray_lake.writer.ticket import Ticket

logger = logging.getLogger("xray_lake")


class _Mark:
    """A soft flush ticket: `callback` runs once everything queued before it is durable (or
    counted as shed), at the writer's own write cadence; it forces no write."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


class Writer:
    """Owns the worker thread of one process, which drains its intake (writer/intake.py:
    the queue and the per-partition buffers) and writes the buffers when they are due."""

    def __init__(self, settings: Settings, sink: Sink, *, host: str, pid: int, version: str) -> None:
        self.settings = settings
        self.sink = sink
        self.counters = Counters()
        self._failover = FailoverSink(sink, settings, self.counters)
        self._dead_letters = DeadLetters(settings.spool_dir, settings.root)
        self._intake = Intake(settings, self.counters, self._dead_letters, host=host, pid=pid,
                              version=version)
        self._lock = self._intake.lock
        self._wake = threading.Event()
        self.memory = self._intake.memory
        self._since_release = 0  # estimated bytes encoded since freed memory was returned
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_write = time.monotonic()
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
        intake = self._intake
        n, estimate = intake.estimate(event)
        with self._lock:
            refused = intake.admit(event, n, estimate, closed=lambda: self._closed,
                                   nudge=self._wake.set,
                                   own_thread=threading.current_thread() is self._thread)
            if refused is None:
                wake = intake.queued_bytes >= self.memory.wake_at
                start = self._new_thread()
        if refused == CLOSED:  # replaced by configure(): the writer in force takes it
            forward_or_shed(self.forward, event, lambda: self.shed(CLOSED, event))
        if refused is not None:
            return
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
            self._intake.queue.append((_Mark(callback), 0))
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
            self._intake.charge(reason, run_id, 1 + n, n)

    def shed(self, reason: str, event: RunEvent | StageEvent) -> None:
        """Count a record the SDK lost before it reached the queue (an internal error while
        capturing it): flush() then returns False and its run row says 'incomplete'."""
        n = event.n_items() if isinstance(event, StageEvent) else 0
        with self._lock:
            self._intake.drop(reason, event, n)

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
                return not self._intake.take_failed()
            ticket = Ticket()
            self._intake.queue.append((ticket, 0))
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
        intake = self._intake
        with self._lock:
            waiting = sum(1 + item.n_items() if isinstance(item, StageEvent) else 1
                          for item, _ in intake.queue if not isinstance(item, Ticket | _Mark))
            waiting += sum(b.rows(t) for b in intake.buffers.values()
                                             for t in WRITE_ORDER)
            return waiting, intake.queued_bytes + intake.buffered_bytes

    # --- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        intake = self._intake
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
            if self._marks and not intake.buffers:  # all they waited for is durable or counted
                self._answer_marks()
            for ticket in tickets:
                with self._lock:
                    failed = intake.take_failed()
                ticket.ok = ok and not failed
                ticket.done.set()
            if self._closed and not intake.queue:
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
        buffers = self._intake.buffers
        if not buffers:
            return False
        rows = sum(b.n_candidates for b in buffers.values())
        return (
            self._hurried
            or time.monotonic() - self._last_write >= s.flush_interval_s
            or rows >= s.flush_rows
            or self._intake.buffered_bytes >= self.memory.flush_at
        )

    def _drain(self) -> list[Ticket]:
        """Encode what is queued now, for at most drain_interval_s: under sustained load the
        queue never empties, and the worker must still write files on time and answer flush().

        Stops early once the buffers reach the write threshold, so a burst is written (and
        its memory freed) instead of encoded up to the bound and then dropped. Not when they
        were already past it: writes are failing, and tickets must still be answered.
        """
        intake = self._intake
        tickets: list[Ticket] = []
        stop_at = time.monotonic() + self.settings.drain_interval_s
        below = intake.buffered_bytes < self.memory.flush_at
        for _ in range(len(intake.queue)):
            if time.monotonic() >= stop_at or (
                below and intake.buffered_bytes >= self.memory.flush_at
            ):
                break
            try:
                item, estimate = intake.queue.popleft()
            except IndexError:
                break
            if isinstance(item, Ticket):
                tickets.append(item)
                continue
            if isinstance(item, _Mark):
                self._marks.append(item)
                continue
            intake.add_queued(item, estimate)
            del item  # the caller's objects it references are freed now, not next round
            self._since_release += estimate
            if self._since_release >= self.memory.release_every:
                self._release_memory()
        if intake.queue:
            self._wake.set()  # more waits: no idle pause before the next round
        return tickets

    def _bury(self, buf: PartitionBuffer) -> None:
        """Dead-letter the rows a table could not hold (counted; their run says 'incomplete')."""
        for name, unit, exc in buf.set_aside:
            run_id, records, n = unit_counts(unit)
            kept = self._dead_letters.put(unit, exc, name)
            marked = name != "runs" and mark_incomplete(buf.runs, run_id, 1, n)
            with self._lock:
                self._intake.charge(None if kept else "encode_error",
                                    None if name == "runs" or marked else run_id, records, n)
        buf.set_aside.clear()

    def _write_all(self) -> bool:
        """Publish every buffered partition to the lake, or to the spool when the lake fails.

        True when everything is durable in one or the other; what neither takes stays
        buffered for the next attempt.
        """
        ok = True
        self._hurried = False
        buffers = self._intake.buffers
        for key, buf in list(buffers.items()):
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
                buffers.pop(key, None)
            # the batches just written are freed (and returned) before the next partition's
            # write adds its working set
            table = None
            self._release_memory()
        self._failover.drain_spool()
        with self._lock:
            self._intake.recount()
            if not ok:
                self._intake.failed = True
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
            "peak_buffered_bytes": self._intake.peak_held,
            **c.as_stats(),
            "compaction": self._compactor.stats() if self._compactor is not None else {},
        }
