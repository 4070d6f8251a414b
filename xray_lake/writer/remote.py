"""The application's side of its writer process, with the surface of the thread writer.

Records wait in a bounded outbox (writer/outbox.py) until a sender thread (writer/sender.py)
pickles them in batches for the writer process, which acknowledges each batch once it is
durable. What the application holds, queued or unacknowledged, counts against an eighth of
max_buffer_bytes (`client_hold`): past it, recording calls wait (on_full="block") or shed
(on_full="drop"), as with the thread writer. Records the writer process cannot take go to
a thread writer of this process (see writer/sender.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xray_lake.config import Settings
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.writer.admission import CLOSED, forward_or_shed
from xray_lake.writer.counts import add_counts, empty_stats
from xray_lake.writer.outbox import Outbox, client_hold
from xray_lake.writer.sender import Sender

if TYPE_CHECKING:
    from xray_lake.writer.engine import Writer

_STAGE_BYTES = 1024
_ROW_BYTES = 300.0  # estimate per candidate of a queued record (see StageEvent.estimate_bytes)


class RemoteWriter:
    """Same surface as engine.Writer (submit, shed, flush, close, stats), another process's work."""

    def __init__(self, settings: Settings, *, writer_id: str, host: str, pid: int,
                 version: str, local: Callable[[], Writer]) -> None:
        self.settings = settings
        self.hold = client_hold(settings)
        self.forward: Callable[[RunEvent | StageEvent], bool] | None = None
        self.writer_id = writer_id  # names the writer process's files (storage/layout.py)
        self._outbox = Outbox(settings, self.hold)
        self._lock = self._outbox.lock
        self._make_local = local
        self._local: Writer | None = None
        config = ("config", settings.as_dict(), writer_id, host, pid, version)
        self._sender = Sender(self._outbox, settings, config, self._local_writer)

    def submit(self, event: RunEvent | StageEvent) -> None:
        """Queue a record; no I/O, no encoding. At the bound: wait or shed (as engine.Writer)."""
        sender = self._sender
        if sender.fallen_back:
            self._local_writer().submit(event)
            return
        if isinstance(event, StageEvent):
            n, estimate = event.n_items(), event.estimate_bytes(_ROW_BYTES)
        else:
            n, estimate = 0, _STAGE_BYTES
        with self._lock:
            refused = self._outbox.put(event, n, estimate, own_thread=sender.is_current())
            if refused is None:
                start = sender.new_thread()
        if refused == CLOSED:  # replaced by configure(): the writer in force takes it
            forward_or_shed(self.forward, event, lambda: self.shed(CLOSED, event))
        if refused is not None:
            return
        if start:
            sender.start()

    def shed(self, reason: str, event: RunEvent | StageEvent) -> None:
        """Count a record the SDK lost before it reached the outbox (see engine.Writer.shed)."""
        n = event.n_items() if isinstance(event, StageEvent) else 0
        with self._lock:
            self._outbox.shed(reason, event, n)

    def flush(self, timeout: float | None = None) -> bool:
        """True only if everything submitted so far is durable (lake or spool)."""
        sender = self._sender
        if sender.is_current():
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            failed, self._outbox.failed = self._outbox.failed, False
            remote = sender.thread is not None and not sender.fallen_back
            closed = self._outbox.closed
            if remote and not closed:
                ticket = sender.ask_flush()
        ok = not failed
        if remote:
            if closed:  # done once the writer process has written everything and exited
                started = sender.spawned.wait(_left(deadline))
                child = sender.child
                ended = child is not None and child.gone.wait(_left(deadline))
                ok = started and ended and sender.exit_clean and ok
            else:
                ok = ticket.done.wait(_left(deadline)) and ticket.ok and ok
        local = self._local
        if local is not None:
            ok = local.flush(_left(deadline)) and ok
        return ok

    def close(self, timeout: float | None) -> bool:
        """Flush within `timeout`, then refuse records; the writer process writes what it
        holds and exits on its own (also after this process has exited)."""
        if timeout:
            self._sender.wait_started()
        ok = self.flush(timeout)
        self._outbox.close()
        sender = self._sender.thread
        if sender is not None and threading.current_thread() is not sender:
            sender.join(timeout)  # the rest of the outbox reaches the pipe, then its end
        local = self._local
        if local is not None:
            local.close(timeout)
        return ok

    def finished(self) -> bool:
        """Closed, and every writer it used (its writer process, a thread writer) has ended."""
        if not self._outbox.closed:
            return False
        sender = self._sender
        if sender.thread is None:
            return True
        if not sender.spawned.is_set():
            return False  # still starting its writer process
        child, local = sender.child, self._local
        return (child is None or child.gone.is_set()) and (local is None or local.finished())

    def buffered(self) -> tuple[int, int]:
        """(records, bytes) not yet handed to a writer: what this process's exit would lose."""
        with self._lock:
            records, nbytes = self._outbox.queued()
        local = self._local
        if local is not None:
            more, more_bytes = local.buffered()
            records, nbytes = records + more, nbytes + more_bytes
        return records, nbytes

    def handed_over(self) -> bool:
        """Everything submitted is in the writer process's pipe (or a thread writer's queue)."""
        with self._lock:
            return not self._outbox.items and not self._outbox.in_flight

    @property
    def pid(self) -> int | None:
        """The writer process's pid (None before the first record)."""
        child = self._sender.child
        return child.pid if child is not None else None

    def stats(self) -> dict[str, Any]:
        """The writer process's counters (as of its last answer) plus what this side shed."""
        outbox = self._outbox
        with self._lock:
            result = dict(self._sender.child_stats) or empty_stats(self.hold)
            waiting, _ = outbox.queued()
            result["buffered_records"] = waiting + sum(n for _, n, _ in outbox.unacked)
            result["buffered_bytes"] = outbox.held
            result["buffer_limit_bytes"] = self.hold
            result["peak_buffered_bytes"] = outbox.peak
            dropped = Counter(result.get("dropped", {}))
            dropped.update(outbox.dropped)
            result["dropped"] = dict(dropped)
            result["dropped_total"] = sum(dropped.values())
            result["blocked_calls"] = result.get("blocked_calls", 0) + outbox.waits.blocked_calls
            result["blocked_s"] = round(result.get("blocked_s", 0.0) + outbox.waits.blocked_s, 3)
            result["writer_restarts"] = self._sender.restarts
            result["writer_pid"] = self.pid
        local = self._local
        if local is not None:
            add_counts(result, local.stats(), buffered=True)
        return result

    def _local_writer(self) -> Writer:
        with self._lock:
            if self._local is None:
                self._local = self._make_local()
            return self._local


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
