"""A flush request: resolved once everything queued before it is durable (or failed)."""

from __future__ import annotations

import threading


class Ticket:
    """`done` is set when answered; `ok` says whether all it waited for is durable."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
