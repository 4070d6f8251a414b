"""The thread that carries the outbox to the writer process and acts on its answers.

It encodes raw values, pickles records in batches (writer/wire.py) and writes them to the
writer process's stdin. A writer process that dies is restarted and given every frame it
had not acknowledged, and every flush request it had not answered (one killed between a
write and its acknowledgement may then write a batch twice). Records go to a thread writer
of this process instead when they hold objects of the application's own classes
(wire.Foreign), and all of them once no writer process can be had (three deaths within a
minute, or no interpreter to start).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xray_lake.config import Settings
from xray_lake.writer import wire
from xray_lake.writer.child_process import ChildProcess
from xray_lake.writer.outbox import Control, Outbox
from xray_lake.writer.ticket import Ticket

if TYPE_CHECKING:
    from xray_lake.writer.engine import Writer

logger = logging.getLogger("xray_lake")

RESTARTS_PER_MINUTE = 3  # more deaths than this and records go to a thread writer
# A writer process gets this long to start (say hello); one that does not is killed and
# records go to a thread writer (an interpreter that is not Python, a stuck start). At exit,
# a writer process still starting gets it before exit_timeout_s counts: the flush at exit
# bounds writing, not starting.
START_GRACE_S = 30.0


class Sender:
    """The sender thread, the writer process it feeds and the flush requests it has sent;
    its state changes under the outbox's lock."""

    def __init__(self, outbox: Outbox, settings: Settings, config: tuple[Any, ...],
                 local: Callable[[], Writer]) -> None:
        self.settings = settings
        self.thread: threading.Thread | None = None
        self.child: ChildProcess | None = None
        self.spawned = threading.Event()  # the first start was tried (it may have failed)
        self.fallen_back = False
        self.exit_clean = False  # the writer process said a clean goodbye
        self.restarts = 0
        self.child_stats: dict[str, Any] = {}  # the writer process's counters, as last told
        self._outbox = outbox
        self._lock = outbox.lock
        self._config = config
        self._local = local  # the thread writer (created on first use)
        self._deaths: deque[float] = deque()
        self._tickets: dict[int, Ticket] = {}
        self._next_ticket = 0
        self._open_flushes: list[tuple[Any, ...]] = []  # sent, not answered: resent on restart
        self._warned: set[str] = set()

    # --- the application's threads -------------------------------------------------------

    def new_thread(self) -> bool:
        """(lock held) Create the thread on the first record; True if it must be started."""
        if self.thread is not None:
            return False
        self.thread = threading.Thread(target=self._run, daemon=True, name="xray-lake-sender")
        return True

    def start(self) -> None:
        assert self.thread is not None
        self.thread.start()

    def is_current(self) -> bool:
        return threading.current_thread() is self.thread

    def ask_flush(self) -> Ticket:
        """(lock held) A flush request, in order with the records; answered by the writer
        process (or at once if the records go to a thread writer)."""
        ticket = Ticket()
        self._next_ticket += 1
        self._tickets[self._next_ticket] = ticket
        self._outbox.request(("flush", self._next_ticket))
        return ticket

    def wait_started(self) -> None:
        """Give a writer process still starting its START_GRACE_S."""
        if self.thread is None:
            return
        self.spawned.wait(START_GRACE_S)
        child = self.child
        if child is not None:
            child.started.wait(START_GRACE_S)

    # --- the sender's thread -------------------------------------------------------------

    def _run(self) -> None:
        outbox = self._outbox
        try:
            self._start_child()
            self.spawned.set()
            while True:
                with self._lock:
                    while not outbox.items and not outbox.closed and not self._died():
                        outbox.work.wait()
                    if not outbox.items and outbox.closed and not self._died():
                        break  # closed, and everything is out (to a writer still alive)
                    batch = None if self._died() else outbox.take()
                if batch is None:
                    self._restart()  # it died while idle: what it held must not wait
                    continue
                try:
                    self._send(batch)
                finally:
                    outbox.passed()
        except Exception as exc:  # the sender must end cleanly whatever happens
            logger.exception("xray-lake: the writer process's sender failed: %s", exc)
            self._fall_back()
        finally:
            self.spawned.set()
            if self.child is not None:
                self.child.close_input()

    def _died(self) -> bool:
        """The writer process ended on its own (not after the end of its input)."""
        child = self.child
        return child is not None and child.gone.is_set() and not self.fallen_back

    def _send(self, batch: list[tuple[object, int]]) -> None:
        if self.fallen_back:  # submitted while the fallback moved the outbox
            for item, est in batch:
                if not isinstance(item, Control):
                    self._local().submit(item)  # type: ignore[arg-type]
                self._outbox.release(est)
            return
        first = batch[0][0]
        if isinstance(first, Control):
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
            self._local().submit(event)  # type: ignore[arg-type]
        self._outbox.framed(frame, len(records) - len(foreign), estimate)
        if frame is not None:
            self._write(frame)

    def _frame(self, records: list[object]) -> tuple[bytes | None, list[object]]:
        """One frame of the records that are plain data, and those that are not."""
        seq = self._outbox.seq + 1
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
            assert self.child is not None
            self.child.send(frame)
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
        self.child = child
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
            self._outbox.work.notify()  # the sender restarts it if it still has work

    def _restart(self) -> None:
        """The writer process died: start another and resend what was not acknowledged."""
        child = self.child
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
        self.restarts += 1
        self._start_child()
        if self.fallen_back or self.child is None:
            return
        with self._lock:
            resend = self._outbox.frames()
            resend += [wire.dumps(message) for message in self._open_flushes]
        try:
            for frame in resend:
                self.child.send(frame)
        except (OSError, ValueError):
            self._restart()  # died again (bounded: RESTARTS_PER_MINUTE)

    def _fall_back(self) -> None:
        """No writer process: everything it had not acknowledged goes to a thread writer."""
        if self.fallen_back:
            return
        logger.warning("xray-lake: no writer process; records are written by a thread of "
                       "this process")
        local = self._local()
        with self._lock:
            self.fallen_back = True
            frames = self._outbox.take_back()
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
        for item in self._outbox.empty():
            local.submit(item)  # type: ignore[arg-type]

    # --- the writer process's answers (on its reading thread) ----------------------------

    def _answer(self, message: Any) -> None:
        """Act on one answer of the writer process."""
        kind = message[0]
        if kind == "ack":
            _, seq, stats = message
            with self._lock:
                self.child_stats = stats
                self._outbox.acknowledge(seq)
        elif kind == "flushed":
            _, number, ok, stats = message
            with self._lock:
                self.child_stats = stats
                ticket = self._tickets.pop(number, None)
                self._open_flushes = [m for m in self._open_flushes if m[1] != number]
            if ticket is not None:
                ticket.ok = ok
                ticket.done.set()
        elif kind == "log":
            logger.log(message[1], "%s", message[2])
        elif kind == "bye":  # a clean goodbye: it wrote everything it was given
            with self._lock:
                self.child_stats = message[1]
                self.exit_clean = not (message[1].get("buffered_records")
                                       or message[1].get("dropped_total"))


def _records_of(frame: bytes) -> list[object]:
    message = pickle.loads(memoryview(frame)[4:])
    return list(message[2])
