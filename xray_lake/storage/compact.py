"""Compaction: merge each partition's small Parquet files into large sorted ones, safely for readers."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.config import get_settings
from xray_lake.errors import XrayLakeError
from xray_lake.storage import confine
from xray_lake.storage.fs import fsync_dir, fsync_file, write_parquet
from xray_lake.storage.layout import (
    TABLES,
    VERSION_TOKEN,
    data_file_name,
    escape_label,
    host_tag,
    temp_file_name,
    unescape_label,
)
from xray_lake.storage.s3 import is_remote

DEFAULT_TARGET_SIZE = 128 * 2**20
COMPACTION_DIR = "_compaction"
EPOCH_FILE = "epoch"
MERGED_DIR = "_merged"  # <root>/_merged/<partition key>: names of files merged away
PENDING = ".pending.json"
COMMITTED = ".committed.json"
LOCK_STALE_S = 3600.0
Progress = Callable[[int, int], None]
"""Called with (partitions done, partitions planned): once at 0, then after each partition."""

_DATA_FILE = re.compile(rf"^part-v({VERSION_TOKEN})-.+\.parquet$")  # files of one token merge
_COMPACT_TEMP = re.compile(rf"^\.part-v{VERSION_TOKEN}-compact-.+\.parquet\.tmp$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_HOST = socket.gethostname()

# Test seam: called with the name of each step just completed ("written", "pending", "visible",
# "committed", "source_deleted", "done"), so tests can kill the process between steps.
_step_hook: Callable[[str], None] | None = None


# --- the on-disk protocol, shared with the readers in storage.catalog ----------------------


def compaction_dir(root: str) -> str:
    return os.path.join(root, COMPACTION_DIR)


def compaction_epoch(root: str) -> int:
    """How many merges ever made a file visible (size of `_compaction/epoch`; 0 if none).

    On object storage, a value that changes whenever a merge is made visible (from the
    ETag of `_compaction/epoch`, rewritten by every merge).
    """
    if is_remote(root):
        from xray_lake.storage import remote_compact

        return remote_compact.compaction_epoch(root)
    try:
        return os.stat(os.path.join(root, COMPACTION_DIR, EPOCH_FILE)).st_size
    except OSError:
        return 0


def marker_names(root: str) -> frozenset[str]:
    """Names of the pending and committed markers: one `listdir`, cheap enough per query."""
    try:
        if is_remote(root):
            from xray_lake.storage.store import open_store

            names = [e.name for e in open_store(root).listdir(COMPACTION_DIR)[1]]
        else:
            names = os.listdir(os.path.join(root, COMPACTION_DIR))
    except OSError:
        return frozenset()
    return frozenset(
        n for n in names if not n.startswith(".") and n.endswith((PENDING, COMMITTED))
    )


def wait_until_idle(root: str, timeout: float) -> bool:
    """Wait up to `timeout` s until no partition is locked by a compactor; True if none is.

    Readers call it before retrying a query whose files were merged away, so the next listing
    is not taken in the middle of a merge that is about to delete what it lists.
    """
    deadline = time.monotonic() + timeout
    remote = is_remote(root)
    while True:
        try:
            if remote:
                from xray_lake.storage.store import open_store

                names = [e.name for e in open_store(root).listdir(COMPACTION_DIR)[1]]
            else:
                names = os.listdir(os.path.join(root, COMPACTION_DIR))
        except OSError:
            return True
        if not any(n.endswith(".lock") and not n.startswith(".") for n in names):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05 if remote else 0.005)


@dataclass(frozen=True, slots=True)
class Marker:
    """One merge in flight: its visible target and the sources it replaces (paths under root)."""

    name: str
    committed: bool
    table: str
    label: str
    date: str
    partition: str
    target: str
    sources: tuple[str, ...]

    @property
    def job(self) -> str:
        """The merge this marker belongs to (its pending and committed markers share it)."""
        return self.name.removesuffix(COMMITTED if self.committed else PENDING)


def read_marker(root: str, name: str) -> Marker | None:
    """The marker `name`, or None if it vanished (committed or finished since it was listed)."""
    path = os.path.join(root, COMPACTION_DIR, name)
    try:
        if is_remote(root):
            from xray_lake.storage.store import open_store

            text = open_store(root).read(f"{COMPACTION_DIR}/{name}")
            if text is None:
                return None
            raw = json.loads(text)
        else:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
        marker = Marker(name, name.endswith(COMMITTED), str(raw["table"]), str(raw["label"]),
                        str(raw["date"]), str(raw["partition"]), str(raw["target"]),
                        tuple(str(s) for s in raw["sources"]))
        for rel in (marker.target, *marker.sources):  # recovery deletes them: stay in the lake
            folder, _, file_name = rel.rpartition("/")
            if folder != marker.partition or not _DATA_FILE.match(file_name) or \
                    _partition_of(marker.partition) is None:
                raise ValueError(f"{rel!r} is not a data file of partition {marker.partition!r}")
        return marker
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XrayLakeError(
            f"unreadable compaction marker {path}: {exc}. Markers are written atomically, so "
            "this one was edited by hand: delete it if no compaction is running."
        ) from None


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What compaction did to one partition."""

    table: str
    label: str
    date: str
    files_in: int
    files_out: int
    rows: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """The outcome of `compact()`: merged partitions, skipped ones, recoveries, errors."""

    partitions: tuple[PartitionResult, ...] = ()
    locked: tuple[str, ...] = ()
    """Partitions skipped because another live compactor holds their lock."""
    errors: tuple[str, ...] = ()
    """One line per partition that failed (its files are left as they were)."""
    rolled_back: int = 0
    rolled_forward: int = 0
    seconds: float = 0.0
    before: str = ""

    @property
    def files_in(self) -> int:
        return sum(p.files_in for p in self.partitions)

    @property
    def files_out(self) -> int:
        return sum(p.files_out for p in self.partitions)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes_in(self) -> int:
        return sum(p.bytes_in for p in self.partitions)

    @property
    def bytes_out(self) -> int:
        return sum(p.bytes_out for p in self.partitions)


# --- partitions and files ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class _Partition:
    table: str
    value: str  # the escaped label, as in the folder name
    date: str

    @property
    def rel(self) -> str:
        return f"{self.table}/label={self.value}/date={self.date}"

    @property
    def label(self) -> str:
        try:
            return unescape_label(self.value)
        except ValueError:
            return self.value


@dataclass(frozen=True, slots=True, order=True)
class _File:
    mtime: float
    name: str
    size: int = field(compare=False)
    version: str = field(compare=False)  # version token: `1`, or `1p<promoted-fields tag>`


def _partitions(root: str, label: str | None) -> Iterator[_Partition]:
    wanted = None if label is None else "label=" + escape_label(label)
    for table in TABLES:
        if os.path.islink(os.path.join(root, table)):
            continue  # never follow a link out of (or around) the lake: storage.confine
        for label_dir in _subdirs(os.path.join(root, table)):
            if not label_dir.startswith("label=") or (wanted and label_dir != wanted):
                continue
            for date_dir in _subdirs(os.path.join(root, table, label_dir)):
                date = date_dir.removeprefix("date=")
                if date_dir.startswith("date=") and _DATE.match(date):
                    yield _Partition(table, label_dir.removeprefix("label="), date)


def _subdirs(path: str) -> list[str]:
    return sorted(confine.subdirs(path))


def _data_files(folder: str) -> list[_File]:
    found: list[_File] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        match = _DATA_FILE.match(entry.name)
        if match is None or entry.is_symlink():
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        found.append(_File(st.st_mtime, entry.name, st.st_size, match.group(1)))
    return sorted(found)


def _bins(files: list[_File], target_size: int) -> list[list[_File]]:
    """Groups of >= 2 small files (< target/2), oldest first, each adding up to about target."""
    small = [f for f in files if f.size < target_size // 2]
    groups: list[list[_File]] = []
    for version in sorted({f.version for f in small}):
        current: list[_File] = []
        total = 0
        for file in (f for f in small if f.version == version):
            current.append(file)
            total += file.size
            if total >= target_size:
                groups.append(current)
                current, total = [], 0
        groups.append(current)
    return [g for g in groups if len(g) >= 2]


def _cutoff(before: str | _dt.date | None) -> str:
    if before is None:
        return _dt.datetime.now(_dt.UTC).date().isoformat()
    if isinstance(before, _dt.datetime):
        before = before.astimezone(_dt.UTC).date() if before.tzinfo else before.date()
    text = before.isoformat() if isinstance(before, _dt.date) else str(before)
    try:
        if _DATE.match(text) is None:
            raise ValueError(text)
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"before must be a date as YYYY-MM-DD, got {before!r}") from None


# --- locks ---------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lock:
    """A partition lock: a file created exclusively, holding host, pid, time and a token."""

    def __init__(self, root: str, part: _Partition) -> None:
        digest = hashlib.sha1(part.value.encode("utf-8")).hexdigest()
        self.path = os.path.join(compaction_dir(root), f"{part.table}.{digest}.{part.date}.lock")
        self.token = secrets.token_hex(8)
        self.held = False

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when a live compactor does."""
        for _ in range(2):  # one steal, then one retry
            if self._create():
                self.held = True
                return True
            content = self._read()
            if content is None:
                continue  # released between our attempt and the read
            if not self._stale(content) or not self._steal(content):
                return False
        return False

    def _create(self) -> bool:
        """Exclusive create with the content already in place (link of a written temp file)."""
        payload = json.dumps({"host": _HOST, "pid": os.getpid(), "token": self.token,
                              "time": _dt.datetime.now(_dt.UTC).isoformat()})
        # named like every temp file (host-pid-random), so doctor removes one a kill left
        owner = f"{host_tag()}-{os.getpid()}-{self.token[:8]}"
        temp = f"{os.path.dirname(self.path)}/.{os.path.basename(self.path)}.{owner}.tmp"
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write(payload)
        try:
            os.link(temp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temp)

    def _read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _stale(self, content: str) -> bool:
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return True
        if age > LOCK_STALE_S:
            return True
        try:
            owner = json.loads(content)
            return bool(owner["host"] == _HOST and not _pid_alive(int(owner["pid"])))
        except (ValueError, KeyError, TypeError):
            return False

    def _steal(self, content: str) -> bool:
        """Move the stale lock aside; put it back if it changed since we judged it stale."""
        aside = f"{os.path.dirname(self.path)}/.{os.path.basename(self.path)}.{self.token}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        try:
            with open(aside, encoding="utf-8") as fh:
                taken = fh.read()
            if taken != content:  # a live compactor re-created it meanwhile: give it back
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
                return False
            return True
        finally:
            os.unlink(aside)

    def still_mine(self) -> bool:
        """Heartbeat: keep the lock fresh for others' staleness checks, and check ownership."""
        content = self._read()
        if content is None or self.token not in content:
            return False
        with contextlib.suppress(OSError):
            os.utime(self.path)
        return True

    def release(self) -> None:
        if self.held and self.still_mine():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.held = False


# --- merged names: exactly once across compaction ------------------------------------------


def _part_key(part: _Partition) -> str:
    digest = hashlib.sha1(part.value.encode("utf-8")).hexdigest()
    return f"{part.table}.{digest}.{part.date}"


def merged_path(root: str, part: _Partition) -> str:
    """`_merged/<table>.<label digest>.<date>`: one name a line, appended to (kept out of
    `_compaction/`, which holds only what a running compaction needs)."""
    return os.path.join(root, MERGED_DIR, _part_key(part))


def merged_names(root: str, partition_rel: str) -> frozenset[str]:
    """Names of the files compaction merged away from a partition (`<table>/label=/date=`).

    A spooled file of that name was already in the lake once and is in a merged file now:
    replay deletes it instead of copying it back (storage.spool)."""
    part = _partition_of(partition_rel)
    if part is None:
        return frozenset()
    try:
        with open(merged_path(root, part), encoding="utf-8") as fh:
            return frozenset(line.strip() for line in fh if line.strip())
    except FileNotFoundError:
        return frozenset()


def partition_lock(root: str, partition_rel: str) -> _Lock | None:
    """The compaction lock of a partition (`<table>/label=/date=`), for replay to hold while
    it copies a file in; None if `partition_rel` is not a partition."""
    part = _partition_of(partition_rel)
    return None if part is None else _Lock(root, part)


# --- the compactor -------------------------------------------------------------------------


def _hook(step: str) -> None:
    if _step_hook is not None:
        _step_hook(step)


class _LostLock(Exception):
    """Our lock was stolen (we were silent for over an hour): stop before making files visible."""


class _Compactor:
    def __init__(self, root: str, compression_level: int, fsync: bool) -> None:
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", _HOST)[:32] or "host"
        self.root = root
        self.writer_id = f"compact-{host}-{os.getpid()}-{secrets.token_hex(4)}"
        self.level = compression_level
        self.fsync = fsync
        self.seq = 0
        self.cdir = compaction_dir(root)

    # - recovery -

    def recover(self, part: _Partition) -> tuple[int, int]:
        """Under the partition's lock, finish what dead compactors left: (rolled back, forward)."""
        back = forward = 0
        if confine.through_link(self.root, part.rel) is not None:
            return back, forward  # its files are not the lake's: never delete through a link
        for name in sorted(marker_names(self.root)):
            marker = read_marker(self.root, name)
            if marker is None or marker.partition != part.rel:
                continue
            if marker.committed:  # roll forward: the target is in, the sources must go
                self._record_merged(part, [s.rpartition("/")[2] for s in marker.sources])
                for source in marker.sources:
                    self._unlink(os.path.join(self.root, source))
                self._sync(os.path.join(self.root, part.rel))
                forward += 1
            else:  # roll back: the target must go before the marker stops hiding it
                target = os.path.join(self.root, marker.target)
                self._unlink(target)
                self._unlink(os.path.join(os.path.dirname(target),
                                          temp_file_name(os.path.basename(target))))
                self._sync(os.path.dirname(target))
                back += 1
            self._unlink(os.path.join(self.cdir, name))
            self._sync(self.cdir)
        folder = os.path.join(self.root, part.rel)
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):  # temp files of merges killed before their marker
                if _COMPACT_TEMP.match(entry.name):
                    self._unlink(entry.path)
        return back, forward

    # - merging -

    def partition(self, part: _Partition, lock: _Lock, target_size: int) -> PartitionResult:
        confine.check_inside(self.root, part.rel)
        folder = os.path.join(self.root, part.rel)
        return merge_bins(part, _data_files(folder), target_size, lock,
                          lambda group: self._merge(part, folder, group, lock))

    def _merge(self, part: _Partition, folder: str, group: list[_File],
               lock: _Lock) -> tuple[int, int]:
        self.seq += 1
        job = f"{self.writer_id}-{self.seq:08d}"
        name = data_file_name(self.writer_id, self.seq, group[0].version)
        final = os.path.join(folder, name)
        temp = os.path.join(folder, temp_file_name(name))
        pending = os.path.join(self.cdir, job + PENDING)
        committed = os.path.join(self.cdir, job + COMMITTED)
        sources = [os.path.join(folder, f.name) for f in group]

        tables = []
        for path in sources:
            with open(path, "rb") as fh:  # a file object: no hive columns, no URI decoding
                tables.append(pq.ParquetFile(fh).read())
        merged = pa.concat_tables(tables)
        done = "start"
        try:
            write_parquet(merged, temp, part.table, self.level, sort=True)
            if self.fsync:
                fsync_file(temp)
            done = "written"
            _hook(done)
            self._write_json(pending, {
                "table": part.table, "label": part.label, "date": part.date,
                "partition": part.rel, "target": f"{part.rel}/{name}",
                "sources": [f"{part.rel}/{f.name}" for f in group],
                "host": _HOST, "pid": os.getpid(),
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
            })
            done = "pending"
            _hook(done)
            with open(os.path.join(self.cdir, EPOCH_FILE), "ab") as fh:
                fh.write(b".")  # after the marker: see storage.catalog for why
            if not lock.still_mine():
                raise _LostLock(part.rel)
            os.rename(temp, final)
            done = "visible"
            self._sync(folder)
            _hook(done)
            os.rename(pending, committed)
            done = "committed"
            self._sync(self.cdir)
            _hook(done)
        except BaseException:
            if done in ("pending", "visible"):  # undo in reverse: target first, then marker
                self._unlink(final)
                self._sync(folder)
                self._unlink(pending)
            if done != "committed":
                self._unlink(temp)
            raise
        # Committed: from here on a failure leaves the marker for recovery to roll forward.
        self._record_merged(part, [f.name for f in group])
        for path in sources:
            self._unlink(path)
            _hook("source_deleted")
        self._sync(folder)
        self._unlink(committed)
        self._sync(self.cdir)
        _hook("done")
        return merged.num_rows, os.path.getsize(final)

    # - helpers -

    def _record_merged(self, part: _Partition, names: list[str]) -> None:
        """Append the names of merged sources before deleting them (see `merged_names`)."""
        path = merged_path(self.root, part)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{name}\n" for name in names))
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())

    def _write_json(self, path: str, value: dict[str, object]) -> None:
        temp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        with open(temp, "w", encoding="utf-8") as fh:
            json.dump(value, fh)
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(temp, path)
        self._sync(os.path.dirname(path))

    def _sync(self, folder: str) -> None:
        if self.fsync:
            fsync_dir(folder)

    @staticmethod
    def _unlink(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class _PartLock(Protocol):
    def acquire(self) -> bool: ...
    def release(self) -> None: ...
    def still_mine(self) -> bool: ...


def merge_bins(part: _Partition, files: list[_File], target_size: int, lock: _PartLock,
               merge: Callable[[list[_File]], tuple[int, int]]) -> PartitionResult:
    """Merge each bin of small files (`merge` returns rows and bytes written), checking before
    each one that the partition's lock is still held."""
    files_in = files_out = rows = bytes_in = bytes_out = 0
    for group in _bins(files, target_size):
        if not lock.still_mine():
            raise _LostLock(part.rel)
        n_rows, size = merge(group)
        files_in += len(group)
        files_out += 1
        rows += n_rows
        bytes_in += sum(f.size for f in group)
        bytes_out += size
    return PartitionResult(part.table, part.label, part.date, files_in, files_out, rows,
                           bytes_in, bytes_out)


L = TypeVar("L", bound=_PartLock)
L_contra = TypeVar("L_contra", bound=_PartLock, contravariant=True)


class _PartCompactor(Protocol[L_contra]):
    def recover(self, part: _Partition) -> tuple[int, int]: ...
    def partition(self, part: _Partition, lock: L_contra,
                  target_size: int) -> PartitionResult: ...


@dataclass
class _Outcome:
    """What one compaction pass did, before it becomes a `CompactionReport`."""

    results: list[PartitionResult] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    back: int = 0
    forward: int = 0

    def report(self, started: float, cutoff: str) -> CompactionReport:
        return CompactionReport(tuple(self.results), tuple(self.locked), tuple(self.errors),
                                self.back, self.forward, time.perf_counter() - started, cutoff)


def _run_pass(compactor: _PartCompactor[L], lock_for: Callable[[_Partition], L],
              marked: Iterable[_Partition], plan: Callable[[], list[_Partition]],
              target_size: int, progress: Progress | None) -> _Outcome:
    """The steps every store shares: finish interrupted merges, then merge each planned
    partition under its lock (a held lock skips it; a lost lock or an I/O error is reported
    and the other partitions go on). `plan` runs after recovery, which may move files."""
    out = _Outcome()
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
        lock = lock_for(part)
        if not lock.acquire():
            out.locked.append(part.rel)
        else:
            try:
                b, f = compactor.recover(part)
                out.back, out.forward = out.back + b, out.forward + f
                result = compactor.partition(part, lock, target_size)
                if result.files_in:
                    out.results.append(result)
            except _LostLock:
                out.errors.append(f"{part.rel}: lock taken over by another compactor; skipped")
            except (OSError, pa.ArrowException) as exc:
                out.errors.append(f"{part.rel}: {type(exc).__name__}: {exc}")
            finally:
                lock.release()
        if progress is not None:
            progress(done, len(planned))
    return out


def compact(
    root: str | None = None,
    *,
    label: str | None = None,
    before: str | _dt.date | None = None,
    target_size: int = DEFAULT_TARGET_SIZE,
    progress: Progress | None = None,
) -> CompactionReport:
    """Merge the small files of each partition (table x label x date) into large sorted files.

    Only partitions dated before `before` (default: today, UTC, so the partition still being
    written is left alone) and, with `label`, that label's. A file is small below
    `target_size / 2` bytes; partitions with fewer than 2 small files are skipped. Rows are
    sorted by the table's `SORT_KEYS` (records.schema) and written like every data file
    (`write_parquet`, `compression_level` and `fsync` from the settings).

    Each merge: lock the partition (a lock whose pid is dead on this host, or untouched for an
    hour, is stolen; a live one skips the partition), write the merged file under a hidden temp
    name, write a `pending` marker naming target and sources and bump `_compaction/epoch`,
    rename the file in, commit the marker, delete the sources, the marker, the lock. `xr.Lake`
    hides the target of a pending merge and the sources of a committed one, so its readers
    never see a row twice or miss one. Markers a killed compactor left are first rolled back
    (pending) or forward (committed).

    Readers with no xray-lake code (a raw DuckDB/polars/Spark glob) DO count a partition's
    rows twice between the rename and the deletion of the sources (milliseconds per merge):
    compact while they are idle. On object storage (`s3://`) the same protocol runs with
    conditional PUTs for the locks: see `storage.remote_compact` and docs/object-storage.md.
    See docs/compaction.md.
    """
    started = time.perf_counter()
    settings = get_settings()
    root = root or settings.root
    if target_size < 1:
        raise ValueError(f"target_size must be a positive number of bytes, got {target_size}")
    if is_remote(root):
        from xray_lake.storage import remote_compact

        return remote_compact.compact(root, label=label, before=before,
                                      target_size=target_size, progress=progress)
    cutoff = _cutoff(before)
    for rel in (COMPACTION_DIR, f"{COMPACTION_DIR}/{EPOCH_FILE}", MERGED_DIR):
        try:
            confine.check_inside(root, rel)
        except OSError as exc:
            raise XrayLakeError(str(exc)) from None
    os.makedirs(compaction_dir(root), exist_ok=True)
    compactor = _Compactor(root, settings.compression_level, settings.fsync)

    marked = {_marker_partition(root, n) for n in marker_names(root)}
    outcome = _run_pass(
        compactor, lambda part: _Lock(root, part), (p for p in marked if p is not None),
        lambda: [p for p in _partitions(root, label) if p.date < cutoff
                 and len(_bins(_data_files(os.path.join(root, p.rel)), target_size)) > 0],
        target_size, progress)
    return outcome.report(started, cutoff)


def _marker_partition(root: str, name: str) -> _Partition | None:
    marker = read_marker(root, name)
    return None if marker is None else _partition_of(marker.partition)


def _partition_of(rel: str) -> _Partition | None:
    """The partition of `<table>/label=<value>/date=<date>`, or None if `rel` is not one."""
    parts = rel.split("/")
    if len(parts) != 3 or parts[0] not in TABLES or not parts[1].startswith("label=") \
            or not parts[2].startswith("date=") or _DATE.match(parts[2][5:]) is None:
        return None
    return _Partition(parts[0], parts[1].removeprefix("label="), parts[2].removeprefix("date="))
