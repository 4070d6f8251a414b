"""The application's side of its writer process: a bounded outbox, a sender, acknowledgements.

Records wait in the outbox, then a sender thread encodes their raw values, pickles them in
batches (writer/wire.py) and writes them to the writer process's stdin. Each batch is kept
until the writer process acknowledges it as durable, so a writer process that dies is
restarted and given every batch it had not acknowledged (one killed between a write and
its acknowledgement may then write a batch twice). What the application holds, queued or
unacknowledged, counts against an eighth of max_buffer_bytes (`client_hold`): past it,
recording calls wait (on_full="block") or shed (on_full="drop"), as with the thread writer.

A record holding objects of the application's own classes is written by a thread writer
of this process instead (wire.Foreign), as is everything once the writer process cannot
be started (three deaths within a minute, or no interpreter to start).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xray_lake.config import Settings
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.writer import wire
from xray_lake.writer.admission import wait_for_room
from xray_lake.writer.child_process import ChildProcess
from xray_lake.writer.counts import Counters, add_counts, empty_stats
from xray_lake.writer.ticket import Ticket

if TYPE_CHECKING:
    from xray_lake.writer.engine import Writer

logger = logging.getLogger("xray_lake")

BATCH_BYTES = 1 << 20  # estimated record bytes per frame
BATCH_RECORDS = 512
RESTARTS_PER_MINUTE = 3  # more deaths than this and records go to a thread writer
# A writer process gets this long to start (say hello); one that does not is killed and
# records go to a thread writer (an interpreter that is not Python, a stuck start). At exit,
# a writer process still starting gets it before exit_timeout_s counts: the flush at exit
# bounds writing, not starting.
START_GRACE_S = 30.0
_STAGE_BYTES = 1024
_ROW_BYTES = 300.0  # estimate per candidate of a queued record (see StageEvent.estimate_bytes)


class _Control:
    """A message that travels in order with the records: ("flush", n) or ("shed", ...)."""

    __slots__ = ("message",)

    def __init__(self, message: tuple[Any, ...]) -> None:
        self.message = message


class RemoteWriter:
    """Same surface as engine.Writer (submit, shed, flush, close, stats), another process's work."""

    def __init__(self, settings: Settings, *, writer_id: str, host: str, pid: int,
                 version: str, local: Callable[[], Writer]) -> None:
        self.settings = settings
        self.hold = client_hold(settings)
        self.forward: Callable[[RunEvent | StageEvent], bool] | None = None
        self.writer_id = writer_id  # names the writer process's files (storage/layout.py)
        self._config = ("config", settings.as_dict(), writer_id, host, pid, version)
        self._in_flight = 0  # batches taken from the outbox and not yet in the pipe
        self._make_local = local
        self._local: Writer | None = None
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # held bytes shrank
        self._work = threading.Condition(self._lock)  # the outbox has something
        self._outbox: deque[tuple[object, int]] = deque()
        self._unacked: deque[tuple[int, int, bytes]] = deque()  # (last seq, records, frame)
        self._held = 0
        self._peak = 0
        self._seq = 0
        self._tickets: dict[int, Ticket] = {}
        self._next_ticket = 0
        self._open_flushes: list[tuple[Any, ...]] = []  # sent, not answered: resent on restart
        self._child_stats: dict[str, Any] = {}
        self._dropped: Counter[str] = Counter()
        self._waits = Counters()  # blocked_calls / blocked_s of recording calls here
        self._restarts = 0
        self._deaths: deque[float] = deque()
        self._failed = False  # something was shed since the last flush
        self._fallen_back = False
        self._closed = False
        self._sender: threading.Thread | None = None
        self._child: ChildProcess | None = None
        self._spawned = threading.Event()  # the first start was tried (it may have failed)
        self._exit_clean = False
        self._warned: set[str] = set()

    # --- caller's thread -----------------------------------------------------------------

    def submit(self, event: RunEvent | StageEvent) -> None:
        """Queue a record; no I/O, no encoding. At the bound: wait or shed (as engine.Writer)."""
        if self._closed and self.forward is not None and self.forward(event):
            return
        if self._fallen_back:
            self._local_writer().submit(event)
            return
        if isinstance(event, StageEvent):
            n, estimate = event.n_items(), event.estimate_bytes(_ROW_BYTES)
        else:
            n, estimate = 0, _STAGE_BYTES

        def fits() -> bool:  # a record larger than the hold gets in when nothing is held
            return isinstance(event, RunEvent) or self._held + estimate <= self.hold \
                or self._held == 0

        with self._lock:
            reason = wait_for_room(self._room, self.settings, self._waits, fits=fits,
                                   refuse=lambda: "closed" if self._closed else None,
                                   own_thread=threading.current_thread() is self._sender)
            if reason is not None:
                self._shed(reason, event, n)
                return
            self._held += estimate
            self._peak = max(self._peak, self._held)
            self._outbox.append((event, estimate))
            self._work.notify()
            start = self._sender is None
            if start:
                self._sender = threading.Thread(target=self._send_loop, daemon=True,
                                                name="xray-lake-sender")
        if start:
            self._sender.start()  # type: ignore[union-attr]

    def shed(self, reason: str, event: RunEvent | StageEvent) -> None:
        """Count a record the SDK lost before it reached the outbox (see engine.Writer.shed)."""
        n = event.n_items() if isinstance(event, StageEvent) else 0
        with self._lock:
            self._shed(reason, event, n)

    def _shed(self, reason: str, event: object, n: int) -> None:
        """(lock held) Count it here; its run is charged in the writer process, in order."""
        self._dropped[reason] += 1 + n
        self._failed = True
        if isinstance(event, StageEvent):
            self._outbox.append((_Control(("shed", reason, event.run_id, n)), 0))
            self._work.notify()
        if reason not in self._warned:
            self._warned.add(reason)
            logger.warning("xray-lake: shedding records (%s); counted in xr.stats()['dropped'], "
                           "their runs are written with status 'incomplete'", reason)

    def flush(self, timeout: float | None = None) -> bool:
        """True only if everything submitted so far is durable (lake or spool)."""
        if threading.current_thread() is self._sender:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            failed, self._failed = self._failed, False
            remote = self._sender is not None and not self._fallen_back
            closed = self._closed
            if remote and not closed:
                ticket = Ticket()
                self._next_ticket += 1
                self._tickets[self._next_ticket] = ticket
                self._outbox.append((_Control(("flush", self._next_ticket)), 0))
                self._work.notify()
        ok = not failed
        if remote:
            if closed:  # done once the writer process has written everything and exited
                started = self._spawned.wait(_left(deadline))
                child = self._child
                ended = child is not None and child.gone.wait(_left(deadline))
                ok = started and ended and self._exit_clean and ok
            else:
                ok = ticket.done.wait(_left(deadline)) and ticket.ok and ok
        local = self._local
        if local is not None:
            ok = local.flush(_left(deadline)) and ok
        return ok

    def close(self, timeout: float | None) -> bool:
        """Flush within `timeout`, then refuse records; the writer process writes what it
        holds and exits on its own (also after this process has exited)."""
        if timeout and self._sender is not None:
            self._spawned.wait(START_GRACE_S)
            child = self._child
            if child is not None:
                child.started.wait(START_GRACE_S)
        ok = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._work.notify()
        sender = self._sender
        if sender is not None and threading.current_thread() is not sender:
            sender.join(timeout)  # the rest of the outbox reaches the pipe, then its end
        local = self._local
        if local is not None:
            local.close(timeout)
        return ok

    def finished(self) -> bool:
        """Closed, and every writer it used (its writer process, a thread writer) has ended."""
        if not self._closed:
            return False
        if self._sender is None:
            return True
        if not self._spawned.is_set():
            return False  # still starting its writer process
        child, local = self._child, self._local
        return (child is None or child.gone.is_set()) and (local is None or local.finished())

    def buffered(self) -> tuple[int, int]:
        """(records, bytes) not yet handed to a writer: what this process's exit would lose."""
        with self._lock:
            records = sum(1 for item, _ in self._outbox if not isinstance(item, _Control))
            nbytes = sum(est for _, est in self._outbox)
        local = self._local
        if local is not None:
            more, more_bytes = local.buffered()
            records, nbytes = records + more, nbytes + more_bytes
        return records, nbytes

    def handed_over(self) -> bool:
        """Everything submitted is in the writer process's pipe (or a thread writer's queue)."""
        with self._lock:
            return not self._outbox and not self._in_flight

    @property
    def pid(self) -> int | None:
        """The writer process's pid (None before the first record)."""
        child = self._child
        return child.pid if child is not None else None

    def stats(self) -> dict[str, Any]:
        """The writer process's counters (as of its last answer) plus what this side shed."""
        with self._lock:
            result = dict(self._child_stats) or empty_stats(self.hold)
            waiting = sum(1 for item, _ in self._outbox if not isinstance(item, _Control))
            waiting += sum(n for _, n, _ in self._unacked)
            result["buffered_records"] = waiting
            result["buffered_bytes"] = self._held
            result["buffer_limit_bytes"] = self.hold
            result["peak_buffered_bytes"] = self._peak
            dropped = Counter(result.get("dropped", {}))
            dropped.update(self._dropped)
            result["dropped"] = dict(dropped)
            result["dropped_total"] = sum(dropped.values())
            result["blocked_calls"] = result.get("blocked_calls", 0) + self._waits.blocked_calls
            result["blocked_s"] = round(result.get("blocked_s", 0.0) + self._waits.blocked_s, 3)
            result["writer_restarts"] = self._restarts
            result["writer_pid"] = self.pid
        local = self._local
        if local is not None:
            add_counts(result, local.stats(), buffered=True)
        return result

    # --- sender thread -------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            self._start_child()
            self._spawned.set()
            while True:
                with self._lock:
                    while not self._outbox and not self._closed and not self._died():
                        self._work.wait()
                    if not self._outbox and self._closed and not self._died():
                        break  # closed, and everything is out (to a writer still alive)
                    if self._died():
                        batch = None
                    else:
                        batch = self._take()
                        self._in_flight += 1
                if batch is None:
                    self._restart()  # it died while idle: what it held must not wait
                    continue
                try:
                    self._send(batch)
                finally:
                    with self._lock:
                        self._in_flight -= 1
        except Exception as exc:  # the sender must end cleanly whatever happens
            logger.exception("xray-lake: the writer process's sender failed: %s", exc)
            self._fall_back()
        finally:
            self._spawned.set()
            if self._child is not None:
                self._child.close_input()

    def _died(self) -> bool:
        """The writer process ended on its own (not after the end of its input)."""
        child = self._child
        return child is not None and child.gone.is_set() and not self._fallen_back

    def _take(self) -> list[tuple[object, int]]:
        """(lock held) The next run of records, or one control message."""
        first = self._outbox.popleft()
        batch = [first]
        if isinstance(first[0], _Control):
            return batch
        size = first[1]
        while (self._outbox and size < BATCH_BYTES and len(batch) < BATCH_RECORDS
               and not isinstance(self._outbox[0][0], _Control)):
            item = self._outbox.popleft()
            batch.append(item)
            size += item[1]
        return batch

    def _send(self, batch: list[tuple[object, int]]) -> None:
        if self._fallen_back:  # submitted while the fallback moved the outbox
            for item, est in batch:
                if not isinstance(item, _Control):
                    self._local_writer().submit(item)  # type: ignore[arg-type]
                with self._lock:
                    self._held -= est
            return
        first = batch[0][0]
        if isinstance(first, _Control):
            message = first.message
            if message[0] == "flush":
                with self._lock:  # the reading thread rewrites the list on each answer
                    self._open_flushes.append(message)
            self._write(wire.dumps(message))
            return
        records: list[object] = []
        estimate = 0
        for event, est in batch:
            estimate += est
            try:
                wire.encode_raw_values(event, self.settings)  # type: ignore[arg-type]
            except Exception:
                logger.debug("xray-lake: encoding raw values for the wire failed", exc_info=True)
            records.append(event)
        del batch, first, event
        frame, foreign = self._frame(records)
        for event in foreign:
            self._local_writer().submit(event)  # type: ignore[arg-type]
        with self._lock:
            if frame is not None:
                self._seq += 1
                self._unacked.append((self._seq, len(records) - len(foreign), frame))
                self._held += len(frame)
            self._held -= estimate
            self._room.notify_all()
        if frame is not None:
            self._write(frame)

    def _frame(self, records: list[object]) -> tuple[bytes | None, list[object]]:
        """One frame of the records that are plain data, and those that are not."""
        seq = self._seq + 1
        try:
            return wire.dumps(("records", seq, records)), []
        except Exception:
            pass
        plain: list[object] = []
        foreign: list[object] = []
        for event in records:
            try:
                wire.dumps(event)
            except Exception as exc:
                foreign.append(event)
                if "foreign" not in self._warned:
                    self._warned.add("foreign")
                    logger.info("xray-lake: records holding %s objects are written by a thread "
                                "of this process, not the writer process", exc)
            else:
                plain.append(event)
        if not plain:
            return None, foreign
        return wire.dumps(("records", seq, plain)), foreign

    def _write(self, frame: bytes) -> None:
        """Write to the writer process. A dead one is restarted and given every frame it had
        not acknowledged and every open flush request (this frame is one of those, or a
        shed notice, whose count stays on this side)."""
        try:
            assert self._child is not None
            self._child.send(frame)
        except (OSError, AssertionError, ValueError):
            self._restart()

    def _start_child(self) -> None:
        child = ChildProcess(self._config, self._answer, self._child_ended)
        try:
            child.start()
        except Exception as exc:
            logger.warning("xray-lake: cannot start a writer process (%s: %s); records are "
                           "written by a thread of this process", type(exc).__name__, exc)
            self._fall_back()
            return
        self._child = child
        deadline = time.monotonic() + START_GRACE_S
        while not child.started.wait(0.05) and not child.gone.is_set():
            if time.monotonic() >= deadline:
                logger.warning("xray-lake: the writer process (pid %s) did not start within "
                               "%s s; records are written by a thread of this process",
                               child.pid, START_GRACE_S)
                child.kill()
                self._fall_back()
                return

    def _child_ended(self) -> None:
        with self._lock:
            self._work.notify()  # the sender restarts it if it still has work

    def _restart(self) -> None:
        """The writer process died: start another and resend what was not acknowledged."""
        child = self._child
        if child is not None:
            child.gone.wait(5.0)
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > 60.0:
            self._deaths.popleft()
        logger.warning("xray-lake: the writer process (pid %s) ended unexpectedly (exit code "
                       "%s); starting another and resending what it had not written",
                       child.pid if child else None, child.returncode() if child else None)
        if len(self._deaths) > RESTARTS_PER_MINUTE:
            self._fall_back()
            return
        self._restarts += 1
        self._start_child()
        if self._fallen_back or self._child is None:
            return
        with self._lock:
            resend = [frame for _, _, frame in self._unacked]
            resend += [wire.dumps(message) for message in self._open_flushes]
        try:
            for frame in resend:
                self._child.send(frame)
        except (OSError, ValueError):
            self._restart()  # died again (bounded: RESTARTS_PER_MINUTE)

    def _fall_back(self) -> None:
        """No writer process: everything it had not acknowledged goes to a thread writer."""
        if self._fallen_back:
            return
        logger.warning("xray-lake: no writer process; records are written by a thread of "
                       "this process")
        local = self._local_writer()
        with self._lock:
            self._fallen_back = True
            frames = [frame for _, _, frame in self._unacked]
            self._unacked.clear()
            tickets = list(self._tickets.values())
            self._tickets.clear()
            self._open_flushes.clear()
        for frame in frames:
            for event in _records_of(frame):
                local.submit(event)  # type: ignore[arg-type]
        ok = local.flush(None) if tickets else True
        for ticket in tickets:
            ticket.ok = ok
            ticket.done.set()
        with self._lock:
            rest = list(self._outbox)
            self._outbox.clear()
            self._held = 0
            self._room.notify_all()
        for item, _ in rest:
            if not isinstance(item, _Control):
                local.submit(item)  # type: ignore[arg-type]

    def _local_writer(self) -> Writer:
        with self._lock:
            if self._local is None:
                self._local = self._make_local()
            return self._local

    # --- the writer process's answers (on its reading thread) ----------------------------

    def _answer(self, message: Any) -> None:
        """Act on one answer of the writer process."""
        kind = message[0]
        if kind == "ack":
            _, seq, stats = message
            with self._lock:
                self._child_stats = stats
                while self._unacked and self._unacked[0][0] <= seq:
                    self._held -= len(self._unacked.popleft()[2])
                self._room.notify_all()
        elif kind == "flushed":
            _, number, ok, stats = message
            with self._lock:
                self._child_stats = stats
                ticket = self._tickets.pop(number, None)
                self._open_flushes = [m for m in self._open_flushes if m[1] != number]
            if ticket is not None:
                ticket.ok = ok
                ticket.done.set()
        elif kind == "log":
            logger.log(message[1], "%s", message[2])
        elif kind == "bye":  # a clean goodbye: it wrote everything it was given
            with self._lock:
                self._child_stats = message[1]
                self._exit_clean = not (message[1].get("buffered_records")
                                        or message[1].get("dropped_total"))


def client_hold(settings: Settings) -> int:
    """What the application keeps (queued records, batches not yet acknowledged): an eighth
    of max_buffer_bytes (32 MiB by default); the writer process has its own bound for what
    it holds. A quarter measured the same burst throughput with 70 MB more application RSS
    (benchmarks/results/2026-12-08-writer-process.md)."""
    return settings.max_buffer_bytes // 8


def _records_of(frame: bytes) -> list[object]:
    message = pickle.loads(memoryview(frame)[4:])
    return list(message[2])


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
