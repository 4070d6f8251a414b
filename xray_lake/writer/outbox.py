"""What the application holds for its writer process, and the bound on it.

Records (and control messages, in order with them) wait here until the sender
(writer/sender.py) takes them; a batch it sent stays, as a frame, until the writer process
acknowledges it as durable, so that it can be resent to a writer process that was restarted.
Queued estimates and unacknowledged frames count against one bound (`hold`): past it, a
recording call waits or sheds (writer/admission.py), as with the thread writer.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Any

from xray_lake.config import Settings
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.writer.admission import CLOSED, wait_for_room
from xray_lake.writer.counts import Counters

logger = logging.getLogger("xray_lake")

BATCH_BYTES = 1 << 20  # estimated record bytes per frame
BATCH_RECORDS = 512


def client_hold(settings: Settings) -> int:
    """What the application keeps (queued records, batches not yet acknowledged): an eighth
    of max_buffer_bytes (32 MiB by default); the writer process has its own bound for what
    it holds. A quarter measured the same burst throughput with 70 MB more application RSS
    (benchmarks/results/2026-12-08-writer-process.md)."""
    return settings.max_buffer_bytes // 8


def hurry_at(hold: int) -> int:
    """Unacknowledged frame bytes at which the writer process writes at once, without waiting
    for its cadence: a quarter of the application's hold."""
    return hold // 4


class Control:
    """A message that travels in order with the records: ("flush", n), ("shed", ...) or
    ("hurry",)."""

    __slots__ = ("message",)

    def __init__(self, message: tuple[Any, ...]) -> None:
        self.message = message


class Outbox:
    """Queued records, unacknowledged frames and the bytes they hold, all guarded by `lock`
    (which the sender and RemoteWriter share, for their own state that changes with it)."""

    def __init__(self, settings: Settings, hold: int) -> None:
        self.settings = settings
        self.hold = hold
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # held bytes shrank
        self.work = threading.Condition(self.lock)  # the outbox has something, or closed
        self.items: deque[tuple[object, int]] = deque()  # (record or Control, estimate)
        self.unacked: deque[tuple[int, int, bytes]] = deque()  # (last seq, records, frame)
        self.held = 0
        self.unacked_bytes = 0  # of the frames in `unacked`
        self.peak = 0
        self.seq = 0  # of the last frame of records
        self.in_flight = 0  # batches taken from the outbox and not yet in the pipe
        self.closed = False
        self.failed = False  # something was shed since the last flush
        self.hurry_queued = False  # a ("hurry",) request waits in `items`
        self.dropped: Counter[str] = Counter()
        self.waits = Counters()  # blocked_calls / blocked_s of recording calls here
        self._warned: set[str] = set()

    # --- the application's threads --------------------------------------------------------

    def put(self, event: RunEvent | StageEvent, n: int, estimate: int, *,
            own_thread: bool) -> str | None:
        """(lock held) Queue a record once it fits: None. Else the reason it was shed
        (counted); or CLOSED, not counted: the caller forwards or sheds it."""

        def fits() -> bool:  # a record larger than the hold gets in when nothing is held
            return isinstance(event, RunEvent) or self.held + estimate <= self.hold \
                or self.held == 0

        reason = wait_for_room(self.room, self.settings, self.waits, fits=fits,
                               refuse=lambda: CLOSED if self.closed else None,
                               own_thread=own_thread, nudge=self._ask_hurry)
        if reason is not None:
            if reason != CLOSED:
                self.shed(reason, event, n)
            return reason
        self.held += estimate
        self.peak = max(self.peak, self.held)
        self.items.append((event, estimate))
        self.work.notify()
        return None

    def shed(self, reason: str, event: object, n: int) -> None:
        """(lock held) Count it here; its run is charged in the writer process, in order."""
        self.dropped[reason] += 1 + n
        self.failed = True
        if isinstance(event, StageEvent):
            self.request(("shed", reason, event.run_id, n))
        if reason not in self._warned:
            self._warned.add(reason)
            logger.warning("xray-lake: shedding records (%s); counted in xr.stats()['dropped'], "
                           "their runs are written with status 'incomplete'", reason)

    def _ask_hurry(self) -> None:
        """(lock held) A caller waits for room: ask the writer process to write now, unless
        the frames it has not acknowledged already make it (`hurry_at`). A frame can be far
        smaller than the estimate a record waits with: at the writer's cadence alone, a small
        leftover frame would hold the next large record for up to flush_interval_s."""
        if not self.hurry_queued and self.unacked_bytes < hurry_at(self.hold):
            self.hurry_queued = True
            self.request(("hurry",))

    def request(self, message: tuple[Any, ...]) -> None:
        """(lock held) Queue a control message, in order with the records."""
        self.items.append((Control(message), 0))
        self.work.notify()

    def queued(self) -> tuple[int, int]:
        """(lock held) (records, estimated bytes) not yet taken by the sender."""
        records = sum(1 for item, _ in self.items if not isinstance(item, Control))
        return records, sum(est for _, est in self.items)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.work.notify()

    # --- the sender's thread -------------------------------------------------------------

    def take(self) -> list[tuple[object, int]]:
        """(lock held) The next run of records, or one control message; in flight until
        `passed()`."""
        self.in_flight += 1
        first = self.items.popleft()
        batch = [first]
        if isinstance(first[0], Control):
            if first[0].message[0] == "hurry":
                self.hurry_queued = False
            return batch
        size = first[1]
        while (self.items and size < BATCH_BYTES and len(batch) < BATCH_RECORDS
               and not isinstance(self.items[0][0], Control)):
            item = self.items.popleft()
            batch.append(item)
            size += item[1]
        return batch

    def passed(self) -> None:
        """A batch from `take()` is in the pipe (or was given to a thread writer, or lost)."""
        with self.lock:
            self.in_flight -= 1

    def framed(self, frame: bytes | None, records: int, estimate: int) -> None:
        """A batch's `records` became `frame` (None: no record of it was plain data): the
        frame's bytes are held, in place of the batch's estimate, until acknowledged."""
        with self.lock:
            if frame is not None:
                self.seq += 1
                self.unacked.append((self.seq, records, frame))
                self.held += len(frame)
                self.unacked_bytes += len(frame)
            self.held -= estimate
            self.room.notify_all()

    def release(self, estimate: int) -> None:
        """A record taken went to a thread writer instead (the sender fell back)."""
        with self.lock:
            self.held -= estimate

    def frames(self) -> list[bytes]:
        """(lock held) The frames not yet acknowledged, oldest first."""
        return [frame for _, _, frame in self.unacked]

    def take_back(self) -> list[bytes]:
        """(lock held) The frames not yet acknowledged, no longer kept for a resend."""
        frames = self.frames()
        self.unacked.clear()
        self.unacked_bytes = 0
        return frames

    def empty(self) -> list[object]:
        """Take every record still queued (for a thread writer): nothing is held any more."""
        with self.lock:
            rest = list(self.items)
            self.items.clear()
            self.held = 0
            self.room.notify_all()
        return [item for item, _ in rest if not isinstance(item, Control)]

    # --- the writer process's answers (on its reading thread) ----------------------------

    def acknowledge(self, seq: int) -> None:
        """(lock held) Frames up to `seq` are durable: their bytes are no longer held."""
        while self.unacked and self.unacked[0][0] <= seq:
            size = len(self.unacked.popleft()[2])
            self.held -= size
            self.unacked_bytes -= size
        self.room.notify_all()
