"""Backpressure at the memory bound: a recording call waits for room, or is told to shed.

The one rule for both writers (the thread writer's queue and the writer process's outbox):
a record that fits is taken; one that does not waits (on_full="block") up to max_block_s,
or is shed at once (on_full="drop", or a call from the writer's own thread, which must not
wait on itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from xray_lake.config import Settings
from xray_lake.writer.counts import Counters

CLOSED = "closed"  # the refusal a closed writer gives; its caller forwards or sheds the record
POLL_S = 0.25  # a waiting call looks again at least this often (a close, a deadline)


def wait_for_room(room: threading.Condition, settings: Settings, counters: Counters, *,
                  fits: Callable[[], bool], refuse: Callable[[], str | None],
                  own_thread: bool, nudge: Callable[[], None] | None = None) -> str | None:
    """(`room`'s lock held) None once `fits()`; else the reason to shed the record.

    `refuse()` is asked first, on every wake (the writer was closed, the record's run was
    already shed...). `nudge()` wakes the writer before each wait. Waits are counted in
    `counters.blocked_calls` / `blocked_s`.
    """
    deadline: float | None = None
    blocked_at = 0.0
    try:
        while True:
            reason = refuse()
            if reason is not None:
                return reason
            if fits():
                return None
            if settings.on_full == "drop" or own_thread:
                return "buffer_full"
            now = time.monotonic()
            if deadline is None:
                deadline, blocked_at = now + settings.max_block_s, now
                counters.blocked_calls += 1
            if now >= deadline:
                return "block_timeout"
            if nudge is not None:
                nudge()
            room.wait(min(deadline - now, POLL_S))
    finally:
        if deadline is not None:
            counters.blocked_s += time.monotonic() - blocked_at


def forward_or_shed(forward: Callable[[Any], bool] | None, event: object,
                    shed: Callable[[], None]) -> None:
    """A record a closed writer refused: the writer in force takes it when configure()
    replaced this one (also while the record waited for room); at exit, `shed()` counts it."""
    if forward is None or not forward(event):
        shed()
