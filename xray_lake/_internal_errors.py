"""Keeps instrumentation faults out of user code: log once per cause, count, re-raise only when strict.

Below every layer (sdk, records, writer) so each can report through it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from xray_lake.config import get_settings

logger = logging.getLogger("xray_lake")

_lock = threading.Lock()
_seen: set[tuple[str, str]] = set()
internal_errors: Counter[str] = Counter()


def warn_once(key: str, message: str, *args: object) -> None:
    """Log `message` at WARNING the first time `key` is seen in this process."""
    with _lock:
        if ("warn", key) in _seen:
            return
        _seen.add(("warn", key))
    logger.warning(message, *args)


def report(where: str, exc: BaseException) -> None:
    """Record an internal failure at `where`; raises it again only under `strict=True`.

    Called from `except Exception` blocks around every piece of recording logic, so the
    user's function always gets its own value or exception back.
    """
    cause = f"{where}:{type(exc).__name__}"
    with _lock:
        internal_errors[where] += 1
        first = ("error", cause) not in _seen
        _seen.add(("error", cause))
    if get_settings().strict:
        raise exc
    if first:
        logger.warning(
            "xray-lake: recording failed in %s (%s: %s); the pipeline is unaffected. "
            "Further errors of this kind are counted in xr.stats() but not logged.",
            where,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )


def reset_for_tests() -> None:
    with _lock:
        _seen.clear()
        internal_errors.clear()
