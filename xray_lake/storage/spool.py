"""The local spool: where batches go when the lake cannot be written, and how they reach it later.

The spool mirrors the lake layout under a folder per lake root, and each file keeps the
name it will have in the lake. Replay copies a file to that same name (temp + rename; on
object storage one PUT) and only then deletes it from the spool, so a replay killed at any
instant and run again rewrites identical bytes under the same name: nothing is lost and no
row is ever doubled.

Compaction may have merged that name away in between (a replay killed after the copy, then
`compact`): it records the names it merged per partition (`compaction.protocol.merged_names`),
and replay deletes a spooled file of such a name instead of copying it back. Replay holds the
partition's compaction lock while it checks and copies (locally per file, on object storage
across the partition's files), so a merge never runs in between, and two replayers of one
file count it once. The writer's spool drain is this same replay.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.storage import confine
from xray_lake.storage.compaction.locks import LocalLock, RemoteLock, partition_lock
from xray_lake.storage.compaction.protocol import COMPACTION_DIR, MERGED_DIR, merged_names
from xray_lake.storage.fs import renamed_into_place
from xray_lake.storage.layout import TABLES
from xray_lake.storage.s3_clients import is_remote
from xray_lake.storage.tempfiles import clean_stale_temps, owner_tag, temp_file_name

MARKER = "LAKE_ROOT"
PartitionLock = LocalLock | RemoteLock


def canonical_root(lake_root: str) -> str:
    """How a root is recorded and compared: an absolute path, or the URI without a final '/'."""
    return lake_root.rstrip("/") if is_remote(lake_root) else os.path.abspath(lake_root)


def spool_folder(spool_dir: str, lake_root: str) -> str:
    """Where `spool_root` keeps the spool of one lake root, without creating anything."""
    key = hashlib.sha256(canonical_root(lake_root).encode()).hexdigest()[:16]
    return os.path.join(spool_dir, key)


def spool_root(spool_dir: str, lake_root: str) -> str:
    """The spool folder of one lake root (created with a marker naming the root).

    The spool is always a local folder, also for `s3://` roots: it is where batches wait
    while the object store cannot be reached.
    """
    recorded = canonical_root(lake_root)
    folder = spool_folder(spool_dir, lake_root)
    marker = os.path.join(folder, MARKER)
    if not os.path.exists(marker):
        os.makedirs(folder, exist_ok=True)
        temp = marker + f".{os.getpid()}.tmp"
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write(recorded)
        os.replace(temp, marker)
    return folder


def spooled_roots(spool_dir: str) -> Iterator[tuple[str, str]]:
    """(spool folder, lake root it belongs to) for every lake with spooled files."""
    if not os.path.isdir(spool_dir):
        return
    for entry in sorted(os.listdir(spool_dir)):
        marker = os.path.join(spool_dir, entry, MARKER)
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as fh:
                yield os.path.join(spool_dir, entry), fh.read().strip()


def pending(folder: str) -> list[str]:
    """Relative paths (`<table>/label=../date=../part-….parquet`) of spooled files."""
    found: list[str] = []
    for table in TABLES:
        base = os.path.join(folder, table)
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.endswith(".parquet") and not name.startswith(".") and \
                        not os.path.islink(os.path.join(dirpath, name)):
                    found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    # candidates first, runs last: a reader who sees a run also sees its stages
    order = {"candidates": 0, "stages": 1, "runs": 2}
    return sorted(found, key=lambda rel: (order.get(rel.split(os.sep)[0], 3), rel))


@dataclass
class ReplayResult:
    files: int = 0
    rows: int = 0
    bytes: int = 0
    failed: int = 0
    quarantined: int = 0
    error: str | None = None
    already_merged: int = 0
    """Spooled files whose name compaction had already merged: deleted, not copied back."""


LOCK_WAIT_S = 10.0
"""How long replay waits for a partition a compactor (or another replayer) holds."""


def replay_folder(folder: str, lake_root: str, *, fsync: bool = True,
                  progress: Callable[[int, int], None] | None = None,
                  lock_wait_s: float = LOCK_WAIT_S) -> ReplayResult:
    """Move every spooled file of `folder` into `lake_root`; stops at the first write failure.

    A spooled file that is not readable Parquet can never be replayed: it is moved to
    `<folder>/_quarantine/` (counted) instead of blocking the files behind it forever.
    Temp files of killed replayers or writers are removed first. A file whose name
    compaction already merged is deleted (`already_merged`); a partition folder that is a
    symbolic link is never written through (a failure). `files` counts only the files this
    call moved, so concurrent replayers' counts add up to the files there were.
    """
    result = ReplayResult()
    with contextlib.suppress(OSError):
        clean_stale_temps(folder)
    files = pending(folder)
    remote = _RemoteReplay(lake_root, lock_wait_s) if files and is_remote(lake_root) else None
    try:
        _replay_files(folder, files, lake_root, remote, fsync, lock_wait_s, result, progress)
    finally:
        if remote is not None:
            remote.release()
    return result


def _replay_files(folder: str, files: list[str], lake_root: str, remote: _RemoteReplay | None,
                  fsync: bool, lock_wait_s: float, result: ReplayResult,
                  progress: Callable[[int, int], None] | None) -> None:
    for i, rel in enumerate(files):
        source = os.path.join(folder, rel)
        partition = os.path.dirname(rel).replace(os.sep, "/")
        outcome: tuple[int, int] | None
        try:
            if remote is not None:
                outcome = remote.replay(source, partition)
            else:
                outcome = _replay_local(source, lake_root, partition, fsync, lock_wait_s)
        except FileNotFoundError:
            continue  # another replayer moved it first
        except OSError as exc:
            result.failed += 1
            result.error = f"{type(exc).__name__}: {exc}"
            break
        except pa.ArrowException:
            _quarantine(folder, rel)
            result.quarantined += 1
            continue
        if outcome is None:
            continue  # another replayer moved it while we waited for the lock
        rows, size = outcome
        if rows < 0:
            result.already_merged += 1
            continue
        result.files += 1
        result.rows += rows
        result.bytes += size
        if progress is not None:
            progress(i + 1, len(files))


class _RemoteReplay:
    """Replay into an `s3://` lake: one PUT per file under its spooled name, under the
    partition's compaction lock (held across that partition's files, which `pending` lists
    together), skipping names compaction already merged."""

    def __init__(self, lake_root: str, lock_wait_s: float) -> None:
        from xray_lake.storage.compaction.locks import supports_conditional_writes
        from xray_lake.storage.object_store import open_store

        self.root = lake_root
        self.store = open_store(lake_root)
        self.conditional = supports_conditional_writes(self.store)
        self.lock_wait_s = lock_wait_s
        self.partition: str | None = None
        self.lock: PartitionLock | None = None
        self.merged: frozenset[str] = frozenset()

    def replay(self, source: str, partition: str) -> tuple[int, int] | None:
        """(rows, bytes) put, (-1, 0) when merged already, None when another replayer took it."""
        if partition != self.partition and not self._enter(partition, source):
            return None
        rows = pq.ParquetFile(source).metadata.num_rows
        size = os.path.getsize(source)
        name = os.path.basename(source)
        if name not in self.merged:
            with open(source, "rb") as fh:
                self.store.put(f"{partition}/{name}", fh.read())
        os.unlink(source)
        return (rows, size) if name not in self.merged else (-1, 0)

    def _enter(self, partition: str, source: str) -> bool:
        self.release()
        lock = partition_lock(self.root, partition, self.conditional)
        # each try is a conditional PUT to the store: poll less often than a local lock
        if lock is not None and not _acquire(lock, partition, source, self.lock_wait_s, 0.05):
            return False
        self.partition, self.lock = partition, lock
        self.merged = merged_names(self.root, partition)
        return True

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
        self.partition, self.lock = None, None


def _replay_local(source: str, lake_root: str, partition: str, fsync: bool,
                  lock_wait_s: float) -> tuple[int, int] | None:
    """Copy one spooled file in under its partition's lock: (rows, bytes), (-1, 0) when its
    name was merged already (spool copy deleted), None when another replayer took it."""
    confine.check_inside(lake_root, partition)
    confine.check_inside(lake_root, COMPACTION_DIR)
    confine.check_inside(lake_root, MERGED_DIR)
    lock = partition_lock(lake_root, partition)
    name = os.path.basename(source)
    if lock is None:  # not a partition folder: no compaction ever touches it
        rows = pq.ParquetFile(source).metadata.num_rows
        size = os.path.getsize(source)
        _copy_atomically(source, os.path.join(lake_root, partition, name), fsync)
        os.unlink(source)
        return rows, size
    os.makedirs(os.path.join(lake_root, COMPACTION_DIR), exist_ok=True)
    if not _acquire(lock, partition, source, lock_wait_s, 0.01):
        return None
    try:
        if not os.path.exists(source):
            return None  # another replayer copied it and deleted it while we waited
        rows = pq.ParquetFile(source).metadata.num_rows
        size = os.path.getsize(source)
        if name in merged_names(lake_root, partition):
            os.unlink(source)  # in the lake already, inside a merged file
            return -1, 0
        _copy_atomically(source, os.path.join(lake_root, partition, name), fsync)
        os.unlink(source)
        return rows, size
    finally:
        lock.release()


def _acquire(lock: PartitionLock, partition: str, source: str, wait_s: float,
             poll_s: float) -> bool:
    """Take the partition's lock, trying every `poll_s`: False as soon as `source` is gone
    (another replayer moved it), OSError once `wait_s` have passed."""
    deadline = time.monotonic() + wait_s
    while not lock.acquire():
        if not os.path.exists(source):
            return False
        if time.monotonic() >= deadline:
            raise OSError(f"partition {partition} stayed locked by a compaction for "
                          f"{wait_s:g} s; its files wait in the spool")
        time.sleep(poll_s)
    return True


def _quarantine(folder: str, rel: str) -> None:
    target = os.path.join(folder, "_quarantine", rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(os.path.join(folder, rel), target)


def _copy_atomically(source: str, target: str, fsync: bool) -> None:
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    # A temp name of our own: two replayers of one file sharing one temp would write one inode,
    # and the first rename could publish it while the other has just truncated it.
    temp = os.path.join(folder, temp_file_name(f"{os.path.basename(target)}.{owner_tag()}"))
    with renamed_into_place(temp, target, fsync=fsync):
        shutil.copyfile(source, temp)
