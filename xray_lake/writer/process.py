"""The one writer of this process: created lazily, replaced in forked children, flushed at exit."""

from __future__ import annotations

import atexit
import os
import re
import socket
import threading
from typing import TYPE_CHECKING, Any

from xray_lake._version import __version__
from xray_lake.config import Settings, get_settings, on_change

if TYPE_CHECKING:  # the writer (pyarrow, Parquet) loads with the first record, not on import
    from xray_lake.writer.engine import Writer
    from xray_lake.writer.sinks import Sink

_lock = threading.Lock()
_writer: Writer | None = None
_sink_override: Sink | None = None
HOST = socket.gethostname()


def writer_id() -> str:
    """Unique per process and per fork: host, pid and a random part (names never collide)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", HOST)[:32] or "host"
    return f"{host}-{os.getpid()}-{os.urandom(4).hex()}"


def get_writer() -> Writer:
    global _writer
    writer = _writer
    if writer is None:
        with _lock:
            if _writer is None:
                from xray_lake.writer.engine import Writer
                from xray_lake.writer.sinks import LakeSink

                settings = get_settings()
                sink = _sink_override or LakeSink(settings, writer_id())
                _writer = Writer(settings, sink, host=HOST, pid=os.getpid(), version=__version__)
            writer = _writer
    return writer


def current_writer() -> Writer | None:
    return _writer


def replace_sink(sink: Sink | None, timeout: float | None = None) -> None:
    """Route records to `sink` (None: back to the lake); flushes what the old sink owed."""
    global _writer, _sink_override
    with _lock:
        old, _writer = _writer, None
        _sink_override = sink
    if old is not None:
        old.close(timeout)


def _settings_changed(old: Settings | None, new: Settings) -> None:
    global _writer
    with _lock:
        previous, _writer = _writer, None
    if previous is not None:
        previous.close(previous.settings.exit_timeout_s)


def _after_fork_in_child() -> None:
    """The parent's queue and thread are not ours: start afresh so no record is written twice."""
    global _writer, _lock
    _lock = threading.Lock()
    _writer = None


def _at_exit() -> None:
    writer = _writer
    if writer is not None:
        writer.close(writer.settings.exit_timeout_s)


def stats() -> dict[str, Any]:
    writer = _writer
    if writer is None:
        from xray_lake.writer.engine import Writer
        from xray_lake.writer.sinks import LakeSink

        return Writer(get_settings(), LakeSink(get_settings(), "stats"), host=HOST,
                      pid=os.getpid(), version=__version__).stats()
    return writer.stats()


on_change(_settings_changed)
os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
