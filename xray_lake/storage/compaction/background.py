"""Background compaction: a daemon thread of the writer that keeps sealed partitions merged.

Every `interval_s` (the `compaction_interval_s` setting) one tick runs, on a thread of low OS
priority, at most `budget_s` of work (a merge under way finishes; the next waits a tick):

- **Sealed partitions**: every table's partitions whose UTC day ended at least `grace_s`
  ago (late flushes of runs that began before midnight have landed by then) are merged as
  `xray-lake compact` merges them.
- **Small tables today**: `runs` and `stages` get one small file per label per flush (every
  10 s by default), so today's partitions of those two are merged too, once they hold
  `small_min_files` small files. Today's `candidates` are left alone: their files are large
  and still arriving, and rewriting them all day would cost more than it saves.

It uses the same protocol as `compact()` (locks, markers, roll back/forward), so readers never
see a row twice, a tick killed half-way is finished by the next tick (or `xray-lake compact`),
and any number of writers' compactors share a lake. A tick never raises: failures are logged
once per kind and counted in `stats()`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import threading
import time
from collections.abc import Callable

from xray_lake.config import Settings
from xray_lake.storage.compaction.plan import DEFAULT_TARGET_SIZE, DataFile, Wanted, dated_before
from xray_lake.storage.compaction.protocol import Partition
from xray_lake.storage.compaction.report import CompactionReport

logger = logging.getLogger("xray_lake")

SMALL_TABLES = ("runs", "stages")
SMALL_MIN_FILES = 32
"""Today's runs/stages partitions are merged once they hold this many small files."""
GRACE_S = 900.0
"""A day's partitions are sealed this long after the day ends (UTC)."""
BUDGET_S = 10.0
"""Work one tick starts; a merge under way when it runs out is finished."""
NICE = 19


class BackgroundCompactor:
    """Compacts one lake root, a bounded amount per tick, on its own daemon thread."""

    def __init__(self, root: str, settings: Settings, *, interval_s: float | None = None,
                 budget_s: float = BUDGET_S, grace_s: float = GRACE_S,
                 small_min_files: int = SMALL_MIN_FILES, target_size: int = DEFAULT_TARGET_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.settings = settings
        self.interval_s = settings.compaction_interval_s if interval_s is None else interval_s
        self.budget_s = budget_s
        self.grace_s = grace_s
        self.small_min_files = small_min_files
        self.target_size = target_size
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._counts: dict[str, float] = dict.fromkeys(
            ("ticks", "merges", "files_in", "rows", "bytes_in", "bytes_out", "rolled_back",
             "rolled_forward", "locked", "errors", "failures", "seconds"), 0)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (idempotent); its first tick comes after one interval."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="xray-lake-compactor",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 0.0) -> None:
        """Ask the thread to stop at its next check; wait up to `timeout` s for it. A merge
        cut short by the process's exit is rolled back or forward by the next compactor."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and timeout != 0.0:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # Linux: per-thread priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while not self._stop.wait(self.interval_s):
            self.tick()

    # --- work ------------------------------------------------------------------------------

    def tick(self) -> None:
        """One bounded round: sealed partitions, then today's small tables. Never raises."""
        started = time.monotonic()

        def over() -> bool:
            return self._stop.is_set() or time.monotonic() - started > self.budget_s

        self._counts["ticks"] += 1
        now = _dt.datetime.fromtimestamp(self.clock(), _dt.UTC)
        sealed = (now - _dt.timedelta(seconds=self.grace_s)).date().isoformat()
        tomorrow = (now + _dt.timedelta(days=1)).date().isoformat()
        today_small = _either(dated_before(sealed, self.target_size),
                              dated_before(tomorrow, self.target_size, tables=SMALL_TABLES,
                                           min_files=self.small_min_files))
        try:
            self._count(self._pass(sealed, today_small, over))
        except Exception as exc:  # a tick must never take the writer down
            self._counts["failures"] += 1
            kind = type(exc).__name__
            log = logger.debug if kind in self._warned else logger.warning
            self._warned.add(kind)
            log("xray-lake: background compaction of %s failed (%s: %s); it retries next tick",
                self.root, kind, exc)
        self._counts["seconds"] += time.monotonic() - started

    def _pass(self, sealed: str, wanted: Wanted, over: Callable[[], bool]) -> CompactionReport:
        if self.root.startswith("s3://"):
            from xray_lake.storage.compaction.remote import compact_remote

            return compact_remote(self.root, self.settings, label=None, cutoff=sealed,
                                  target_size=self.target_size, progress=None, stop=over,
                                  wanted=wanted)
        from xray_lake.storage.compaction.local import compact_local

        return compact_local(self.root, self.settings, label=None, cutoff=sealed,
                             target_size=self.target_size, progress=None, stop=over,
                             wanted=wanted)

    def _count(self, report: CompactionReport) -> None:
        c = self._counts
        c["merges"] += report.files_out
        c["files_in"] += report.files_in
        c["rows"] += report.rows
        c["bytes_in"] += report.bytes_in
        c["bytes_out"] += report.bytes_out
        c["rolled_back"] += report.rolled_back
        c["rolled_forward"] += report.rolled_forward
        c["locked"] += len(report.locked)
        c["errors"] += len(report.errors)
        for line in report.errors:
            if line not in self._warned:
                self._warned.add(line)
                logger.warning("xray-lake: background compaction: %s", line)

    def stats(self) -> dict[str, float]:
        """What it did so far: ticks, merges (files written), files merged away, rows, bytes,
        recoveries, partitions skipped as locked, partition errors, failed ticks, seconds."""
        counts = dict(self._counts)
        counts["seconds"] = round(counts["seconds"], 3)
        return {k: (v if k == "seconds" else int(v)) for k, v in counts.items()}


def _either(first: Wanted, second: Wanted) -> Wanted:
    def wanted(part: Partition, files: list[DataFile]) -> bool:
        return first(part, files) or second(part, files)

    return wanted


def start_background_compaction(settings: Settings,
                                 root: object) -> BackgroundCompactor | None:
    """The writer's hook: a started compactor of `root` when the settings want one (a lake
    sink's root is a str; in-memory sinks have none), else None."""
    if not settings.background_compaction or not isinstance(root, str):
        return None
    compactor = BackgroundCompactor(root, settings)
    compactor.start()
    return compactor
