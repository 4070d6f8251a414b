"""The one writer of this process: created lazily, replaced in forked children, flushed at exit."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xray_lake._version import __version__
from xray_lake.config import Settings, get_settings, on_change
from xray_lake.storage.tempfiles import host_tag
from xray_lake.writer.counts import add_counts

if TYPE_CHECKING:  # the writer (pyarrow, Parquet) loads with the first record, not on import
    from xray_lake.writer.engine import Writer
    from xray_lake.writer.remote import RemoteWriter
    from xray_lake.writer.sinks import Sink

_lock = threading.Lock()
_writer: Writer | RemoteWriter | None = None
_sink_override: Sink | None = None
# What writers replaced by configure() (or replace_sink) counted, so stats() and flush() stay
# truthful across a change of settings: their additive counters, and whether they lost any.
_carried: dict[str, Any] = {}
_carried_failure = False
_draining: list[Writer | RemoteWriter] = []  # replaced writers still writing what they were given
HOST = socket.gethostname()


def writer_id() -> str:
    """Unique per process and per fork: host, pid and a random part (names never collide)."""
    return f"{host_tag(HOST)}-{os.getpid()}-{os.urandom(4).hex()}"


def get_writer() -> Writer | RemoteWriter:
    global _writer
    writer = _writer
    if writer is None:
        with _lock:
            if _writer is None:
                settings = get_settings()
                if _sink_override is None and settings.writer == "process" and not _plugged():
                    from xray_lake.writer.remote import RemoteWriter

                    _writer = RemoteWriter(settings, writer_id=writer_id(), host=HOST,
                                           pid=os.getpid(), version=__version__,
                                           local=lambda: _thread_writer(settings, None))
                else:
                    _writer = _thread_writer(settings, _sink_override)
                _writer.forward = _forward
            writer = _writer
    return writer


def _thread_writer(settings: Settings, sink: Sink | None) -> Writer:
    from xray_lake.writer.engine import Writer
    from xray_lake.writer.sinks import LakeSink

    return Writer(settings, sink or LakeSink(settings, writer_id()), host=HOST,
                  pid=os.getpid(), version=__version__)


def _plugged() -> bool:
    """Metric plugins or stage types registered in this process (the writer process could
    not run their code): such processes keep the thread writer."""
    registry = sys.modules.get("xray_lake.records.plugin_registry")
    return registry is not None and bool(registry.stage_types() or registry.plugins())


def _forward(event: Any) -> bool:
    """A record that reached a writer configure() had just replaced: the writer in force
    takes it (False at exit, when there is none)."""
    if _exiting:
        return False
    get_writer().submit(event)
    return True


_exiting = False


def current_writer() -> Writer | RemoteWriter | None:
    return _writer


def replace_sink(sink: Sink | None, timeout: float | None = None) -> None:
    """Route records to `sink` (None: back to the lake); flushes what the old sink owed."""
    global _writer, _sink_override
    with _lock:
        old, _writer = _writer, None
        _sink_override = sink
    if old is not None:
        _retire(old, old.close(timeout))


def _retire(writer: Writer | RemoteWriter, closed_ok: bool) -> None:
    """A replaced writer: done, its counters fold into the carried ones; still draining (its
    close timed out), it is kept, and flush() waits for it too."""
    if not closed_ok and not writer.finished():
        with _lock:
            _draining.append(writer)
        return
    _fold(writer, closed_ok)


def _fold(writer: Writer | RemoteWriter, ok: bool) -> None:
    global _carried_failure
    counts = writer.stats()
    with _lock:
        add_counts(_carried, counts)
        if not ok:
            _carried_failure = True


def flush_replaced(timeout: float | None) -> bool:
    """Flush the writers configure() replaced that are still writing, within `timeout`;
    False when any is not done or any replaced writer lost records (then clears)."""
    global _carried_failure
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for writer in list(_draining):
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done = writer.flush(left)
        if done or writer.finished():
            with _lock:
                _draining.remove(writer)
            _fold(writer, done)
        else:
            ok = False
    with _lock:
        failed, _carried_failure = _carried_failure, False
    return ok and not failed


def forget_carried() -> None:
    """Drop the counters of replaced writers (for tests that start from zero)."""
    global _carried_failure
    with _lock:
        _carried.clear()
        _draining.clear()
        _carried_failure = False


def _settings_changed(old: Settings | None, new: Settings) -> None:
    global _writer
    with _lock:
        previous, _writer = _writer, None
    if previous is not None:  # configure() does not wait: the old writer drains on its own
        _retire(previous, previous.close(0))


def _after_fork_in_child() -> None:
    """The parent's queue and thread are not ours: start afresh so no record is written twice."""
    global _writer, _lock, _carried_failure
    _lock = threading.Lock()
    _writer = None
    _carried.clear()  # the parent's counts and writers are the parent's
    _draining.clear()
    _carried_failure = False


def _at_exit() -> None:
    global _exiting
    _exiting = True
    writer = _writer
    timeout = (writer.settings if writer is not None else get_settings()).exit_timeout_s
    deadline = time.monotonic() + timeout
    for old in list(_draining):  # replaced by configure() and still writing
        old.close(max(deadline - time.monotonic(), 0.0))
    if writer is not None:
        writer.close(max(deadline - time.monotonic(), 0.0))
    # From here on only this thread logs. A writer thread still at work (its lake and spool
    # refuse, or the bound ran out) that writes to stderr while the interpreter finalizes
    # makes it abort: "Fatal Python error: _enter_buffered_busy".
    logging.getLogger("xray_lake").addFilter(_from_this_thread(threading.current_thread()))
    for left in [*_draining, writer]:
        if left is None:
            continue
        records, _ = left.buffered()
        if records:  # lake and spool both refused them, or the exit bound ran out
            logging.getLogger("xray_lake").warning(
                "xray-lake: %d records were not written before exit (lake %s and spool %s "
                "did not take them within exit_timeout_s=%s); they are lost", records, left.settings.root,
                left.settings.spool_dir, timeout)


def _from_this_thread(thread: threading.Thread) -> Callable[[logging.LogRecord], bool]:
    return lambda record: record.thread == thread.ident


def stats() -> dict[str, Any]:
    """This process's counters: the current writer's plus those of writers it replaced."""
    writer = _writer
    if writer is None:
        from xray_lake.writer.engine import Writer
        from xray_lake.writer.sinks import LakeSink

        writer = Writer(get_settings(), LakeSink(get_settings(), "stats"), host=HOST,
                        pid=os.getpid(), version=__version__)
    result = writer.stats()
    with _lock:
        replaced = [w.stats() for w in _draining]
        carried = dict(_carried)
    for counts in [carried, *replaced]:
        if counts:
            add_counts(result, counts)
    for counts in replaced:  # what they still hold is still buffered
        result["buffered_records"] += counts["buffered_records"]
        result["buffered_bytes"] += counts["buffered_bytes"]
    return result


on_change(_settings_changed)
os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
