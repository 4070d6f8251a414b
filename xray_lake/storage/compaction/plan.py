"""The plan of a compaction pass: which partitions and files merge, and the loop both stores share."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from xray_lake.storage.compaction.protocol import DATE, Partition
from xray_lake.storage.compaction.report import CompactionReport, PartitionResult

DEFAULT_TARGET_SIZE = 128 * 2**20
Progress = Callable[[int, int], None]
"""Called with (partitions done, partitions planned): once at 0, then after each partition."""
Stop = Callable[[], bool]
"""Asked before each partition and each merge: True ends the pass there (background ticks)."""
Wanted = Callable[[Partition, list["DataFile"]], bool]
"""Whether a pass merges this partition, given its data files (which partitions a pass takes)."""

step_hook: Callable[[str], None] | None = None
"""Test seam: called with the name of each merge step just completed ("written", "pending",
"visible", "committed", "source_deleted", "done"), so tests can kill the process between them."""


def hook(step: str) -> None:
    if step_hook is not None:
        step_hook(step)


@dataclass(frozen=True, slots=True, order=True)
class DataFile:
    """A published data file of a partition; ordered oldest first."""

    mtime: float
    name: str
    size: int = field(compare=False)
    version: str = field(compare=False)
    """Its version token: `1`, or `1p<promoted-fields tag>`; only files of one token merge."""


def bins(files: list[DataFile], target_size: int) -> list[list[DataFile]]:
    """Groups of >= 2 small files (< target/2), oldest first, each adding up to about target."""
    small = [f for f in files if f.size < target_size // 2]
    groups: list[list[DataFile]] = []
    for version in sorted({f.version for f in small}):
        current: list[DataFile] = []
        total = 0
        for file in (f for f in small if f.version == version):
            current.append(file)
            total += file.size
            if total >= target_size:
                groups.append(current)
                current, total = [], 0
        groups.append(current)
    return [g for g in groups if len(g) >= 2]


def cutoff(before: str | _dt.date | None) -> str:
    """The first date left alone, as YYYY-MM-DD (default: today, UTC: the unsealed date)."""
    if before is None:
        return _dt.datetime.now(_dt.UTC).date().isoformat()
    if isinstance(before, _dt.datetime):
        before = before.astimezone(_dt.UTC).date() if before.tzinfo else before.date()
    text = before.isoformat() if isinstance(before, _dt.date) else str(before)
    try:
        if DATE.match(text) is None:
            raise ValueError(text)
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"before must be a date as YYYY-MM-DD, got {before!r}") from None


def dated_before(first_kept: str, target_size: int, *, tables: tuple[str, ...] | None = None,
                 min_files: int = 2) -> Wanted:
    """Partitions dated before `first_kept` (of `tables`, default all) holding at least
    `min_files` small files that merge (what `compact()` and a background tick take)."""

    def wanted(part: Partition, files: list[DataFile]) -> bool:
        if part.date >= first_kept or (tables is not None and part.table not in tables):
            return False
        groups = bins(files, target_size)
        return bool(groups) and sum(len(g) for g in groups) >= min_files

    return wanted


class LostLock(Exception):
    """Our lock was taken over (we were silent for over an hour): stop before making files
    visible."""


class PartLock(Protocol):
    def acquire(self) -> bool: ...
    def release(self) -> None: ...
    def still_mine(self) -> bool: ...


L = TypeVar("L", bound=PartLock)
L_contra = TypeVar("L_contra", bound=PartLock, contravariant=True)


class PartCompactor(Protocol[L_contra]):
    def recover(self, part: Partition) -> tuple[int, int]: ...
    def partition(self, part: Partition, lock: L_contra, target_size: int,
                  stop: Stop | None) -> PartitionResult: ...


def merge_bins(part: Partition, files: list[DataFile], target_size: int, lock: PartLock,
               merge: Callable[[list[DataFile]], tuple[int, int]],
               stop: Stop | None = None) -> PartitionResult:
    """Merge each bin of small files (`merge` returns rows and bytes written), checking before
    each one that the partition's lock is still held and that `stop` does not say to end."""
    files_in = files_out = rows = bytes_in = bytes_out = 0
    for group in bins(files, target_size):
        if stop is not None and stop():
            break
        if not lock.still_mine():
            raise LostLock(part.rel)
        n_rows, size = merge(group)
        files_in += len(group)
        files_out += 1
        rows += n_rows
        bytes_in += sum(f.size for f in group)
        bytes_out += size
    return PartitionResult(part.table, part.label, part.date, files_in, files_out, rows,
                           bytes_in, bytes_out)


@dataclass
class Outcome:
    """What one compaction pass did, before it becomes a `CompactionReport`."""

    results: list[PartitionResult] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    back: int = 0
    forward: int = 0

    def report(self, started: float, cutoff: str) -> CompactionReport:
        return CompactionReport(tuple(self.results), tuple(self.locked), tuple(self.errors),
                                self.back, self.forward, time.perf_counter() - started, cutoff)


def run_pass(compactor: PartCompactor[L], lock_for: Callable[[Partition], L],
             marked: Iterable[Partition], plan: Callable[[], list[Partition]],
             target_size: int, progress: Progress | None, stop: Stop | None = None,
             errors: tuple[type[BaseException], ...] = (OSError,)) -> Outcome:
    """The steps every store shares: finish interrupted merges, then merge each planned
    partition under its lock (a held lock skips it; a lost lock or one of `errors` is
    reported and the other partitions go on). `plan` runs after recovery, which may move
    files; `stop` ends the pass early between partitions and merges."""
    out = Outcome()
    for part in sorted(marked):
        lock = lock_for(part)
        if lock.acquire():
            try:
                b, f = compactor.recover(part)
                out.back, out.forward = out.back + b, out.forward + f
            finally:
                lock.release()
    planned = plan()
    if progress is not None:
        progress(0, len(planned))
    for done, part in enumerate(planned, start=1):
        if stop is not None and stop():
            break
        lock = lock_for(part)
        if not lock.acquire():
            out.locked.append(part.rel)
        else:
            try:
                b, f = compactor.recover(part)
                out.back, out.forward = out.back + b, out.forward + f
                result = compactor.partition(part, lock, target_size, stop)
                if result.files_in:
                    out.results.append(result)
            except LostLock:
                out.errors.append(f"{part.rel}: lock taken over by another compactor; skipped")
            except errors as exc:
                out.errors.append(f"{part.rel}: {type(exc).__name__}: {exc}")
            finally:
                lock.release()
        if progress is not None:
            progress(done, len(planned))
    return out
