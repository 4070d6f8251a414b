"""The thread writer's intake: records queued within its hold, then encoded into partition buffers.

A record counts against the hold by its estimate while it is queued, then by its encoded
size once it is in its buffer: `account` swaps one for the other in one step, so admission
(`admit`) keeps queued + buffered near the hold. A record that cannot be encoded is set
aside as a dead letter; one that cannot be admitted is shed, counted and charged to its run.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from xray_lake._internal_errors import report, warn_once
from xray_lake.config import Settings
from xray_lake.records.build import build_run, build_stage
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.writer.admission import CLOSED, wait_for_room
from xray_lake.writer.buffer import PartitionBuffer
from xray_lake.writer.counts import Counters
from xray_lake.writer.dead_letter import DeadLetters
from xray_lake.writer.memory import MemoryPlan
from xray_lake.writer.shedding import ShedLedger

logger = logging.getLogger("xray_lake")

STAGE_ROW_BYTES = 1024  # what a stage or run record costs before its candidates


class Intake:
    """The queue, the partition buffers and the bytes they hold, of one thread writer.

    `lock` guards the byte counts, the queue, what was shed and `failed`; the buffers
    belong to the writer's worker thread.
    """

    def __init__(self, settings: Settings, counters: Counters, dead_letters: DeadLetters, *,
                 host: str, pid: int, version: str) -> None:
        self.settings = settings
        self.counters = counters
        self.memory = MemoryPlan.of(settings)
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # notified whenever held bytes shrink
        self.queue: deque[tuple[object, int]] = deque()  # (record or flush ticket, estimate)
        self.buffers: dict[tuple[str, str], PartitionBuffer] = {}
        self.queued_bytes = 0
        self.buffered_bytes = 0
        self.peak_held = 0  # high-water mark of queued + buffered bytes
        self.failed = False  # something was shed, set aside or not written since the last flush
        self.shed = ShedLedger(counters)
        self._pending = 0  # estimate of the record being encoded, until it is accounted
        self._avg_row_bytes = 300.0
        self._dead_letters = dead_letters
        self._host, self._pid, self._version = host, pid, version

    # --- the caller's thread -------------------------------------------------------------

    def estimate(self, event: RunEvent | StageEvent) -> tuple[int, int]:
        """(candidates, estimated bytes) of a record about to be queued."""
        if isinstance(event, StageEvent):
            return event.n_items(), event.estimate_bytes(self._avg_row_bytes)
        return 0, STAGE_ROW_BYTES

    def admit(self, event: RunEvent | StageEvent, n: int, estimate: int, *,
              closed: Callable[[], bool], nudge: Callable[[], None],
              own_thread: bool) -> str | None:
        """(lock held) Queue a record once it fits (waiting up to max_block_s under
        on_full="block"): None. Else the reason it was shed (counted, and its run is marked
        incomplete); or CLOSED, not counted: the caller forwards or sheds it."""
        drop_mode = self.settings.on_full == "drop"

        def refuse() -> str | None:
            if closed():
                return CLOSED
            if drop_mode and isinstance(event, StageEvent) \
                    and self.shed.lost_part_of(event.run_id):
                return "run_incomplete"  # whole runs where possible
            return None

        def fits() -> bool:  # run rows are always taken: small, and they tell what was shed
            held = self.queued_bytes + self.buffered_bytes
            # a record larger than the hold gets in when nothing else is held
            return isinstance(event, RunEvent) or held + estimate <= self.memory.hold \
                or held == 0

        reason = wait_for_room(self.room, self.settings, self.counters, fits=fits,
                               refuse=refuse, nudge=nudge, own_thread=own_thread)
        if reason is not None:
            if reason != CLOSED:
                self.drop(reason, event, n)
            return reason
        held = self.queued_bytes + self.buffered_bytes + estimate
        self.queued_bytes += estimate
        self.peak_held = max(self.peak_held, held)
        self.queue.append((event, estimate))
        return None

    def drop(self, reason: str, event: object, n: int) -> None:
        """(lock held) Shed one record: counted by reason, and charged to its run, whose row
        then says 'incomplete'."""
        self.charge(reason, event.run_id if isinstance(event, StageEvent) else None, 1 + n, n)

    def charge(self, reason: str | None, run_id: str | None, records: int, n: int) -> None:
        """(lock held) Count `records` shed for `reason` (None: set aside as dead letters); a
        stage's are charged to its run."""
        self.failed = True
        self.shed.charge(reason, run_id, records, n)

    def take_failed(self) -> bool:
        """(lock held) Whether anything failed since the last call."""
        failed, self.failed = self.failed, False
        return failed

    # --- the writer's worker thread ------------------------------------------------------

    def add_queued(self, item: object, estimate: int) -> None:
        """Encode a record taken from the queue; its estimate is released whatever happens
        (a record that cannot be encoded is set aside as a dead letter, or dropped)."""
        self._pending = estimate
        try:
            self.add(item)
        except Exception as exc:
            self._fail_record("encode_error", item, exc)
        finally:
            if self._pending:  # not accounted by add (it failed): release the estimate
                with self.lock:
                    self.queued_bytes -= self._pending
                    self.room.notify_all()
                self._pending = 0

    def add(self, event: object) -> None:
        """Encode one record into its partition buffer.

        Its queued estimate becomes its encoded size in one step (`account`); admission keeps
        queued + buffered near the hold, and only a record that would take it past the whole
        bound while nothing buffered can be written is dropped and counted.
        """
        if isinstance(event, StageEvent):
            built = build_stage(event, self.settings)
            rows = built.candidate_rows
            added = STAGE_ROW_BYTES + (rows.nbytes if rows is not None else 0)
            if not self.account(added, event, event.n_items()):
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
            with self.lock:  # its stages were queued before it: all are in, or shed, by now
                shed = self.shed.settle(event.run_id)
            if shed is not None:
                event.n_stages_shed += shed[0]
                event.n_candidates_shed += shed[1]
            if event.n_stages_shed:
                self.counters.runs_incomplete += 1
            row = build_run(event, self.settings, self._host, self._pid, self._version)
            if not self.account(STAGE_ROW_BYTES, event, 0):
                return
            buf = self._buffer(event.label, event.date)
            buf.runs.append(row)
            buf.nbytes += STAGE_ROW_BYTES
            self.counters.runs_recorded += 1
            return
        raise TypeError(f"not a record: {type(event).__name__}")

    def account(self, added: int, event: object, n: int) -> bool:
        """Swap the pending record's estimate for its encoded bytes, or drop it (False)."""
        with self.lock:
            self.queued_bytes -= self._pending
            self._pending = 0
            self.room.notify_all()
            held = self.queued_bytes + self.buffered_bytes + added
            if held > self.memory.bound and self.buffered_bytes > 0:
                # admission keeps what is held near the hold; an estimate that was far too low,
                # while what is buffered cannot be written (lake and spool refuse), must not
                # take memory past the bound itself
                self.drop("buffer_full", event, n)
                return False
            self.buffered_bytes += added
            self.peak_held = max(self.peak_held, held)
            return True

    def recount(self) -> None:
        """(lock held) After a write: the bytes are what the buffers still hold."""
        self.buffered_bytes = sum(b.nbytes for b in self.buffers.values())
        self.room.notify_all()

    def _buffer(self, label: str, date: str) -> PartitionBuffer:
        key = (label, date)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = PartitionBuffer(label, date)
        return buf

    def _fail_record(self, reason: str, item: object, exc: Exception) -> None:
        n = item.n_items() if isinstance(item, StageEvent) else 0
        kept = self._dead_letters.put(item, exc)
        with self.lock:
            if kept:
                self.charge(None, item.run_id if isinstance(item, StageEvent) else None, 1 + n, n)
            else:
                self.drop(reason, item, n)
        try:
            report("writer.encode", exc)
        except Exception:
            logger.exception("xray-lake: could not encode a record")
