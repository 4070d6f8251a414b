"""Compaction on object storage: the local protocol without rename, locked by conditional PUTs.

Object stores have no rename and no exclusive create, so a merge of partition P goes:

1. **Lock** P: create `_compaction/<table>.<sha1(label folder)>.<date>.lock` with
   `If-None-Match: *` (only one creator wins), holding host, pid, a token and an expiry an
   hour ahead. An expired lock, or one whose pid is dead on this host, is taken over with
   `If-Match: <its ETag>` (only one taker wins). The holder re-reads it and renews it
   (`If-Match` again) before each merge and before making anything visible.
2. **Mark**: PUT `_compaction/<job>.pending.json` naming target and sources, then PUT an
   empty `_compaction/epoch-<time>-<random>`: the set of these names is the readers' epoch
   (it changes with every merge; compaction deletes the ones older than an hour).
3. **Publish**: PUT the merged file at its final name (one request, visible when complete).
4. **Commit**: PUT `<job>.committed.json`, then DELETE the pending marker. While both exist
   the merge counts as committed (`storage.catalog`).
5. **Clean up**: DELETE the sources, the committed marker, the lock.

Readers (`xr.Lake`) treat the markers exactly as on a local lake. A compactor killed at any
step leaves a pending marker (rolled back by the next run: target deleted) or a committed one
(rolled forward: sources deleted). Stores that ignore conditional requests make the lock
advisory only: then run one compactor per prefix (docs/object-storage.md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import secrets
import time

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.config import get_settings
from xray_lake.storage.compact import (
    COMMITTED,
    COMPACTION_DIR,
    EPOCH_FILE,
    LOCK_STALE_S,
    PENDING,
    CompactionReport,
    PartitionResult,
    Progress,
    _bins,
    _cutoff,
    _File,
    _hook,
    _LostLock,
    _Partition,
    _partition_of,
    _pid_alive,
    _run_pass,
    marker_names,
    merge_bins,
    read_marker,
)
from xray_lake.storage.fs import write_parquet
from xray_lake.storage.layout import TABLES, VERSION_TOKEN, data_file_name, escape_label, host_tag
from xray_lake.storage.store import PreconditionFailed, Store, digest, open_store

logger = logging.getLogger("xray_lake")

_DATA_FILE = re.compile(rf"^part-v({VERSION_TOKEN})-.+\.parquet$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_EPOCH_PREFIX = f"{EPOCH_FILE}-"


def compaction_epoch(root: str) -> int:
    """A number that changes whenever a merge bumps the epoch (one LIST; 0 if never).

    Object stores cannot append to `_compaction/epoch`, and a rewritten object's size and
    second-resolution mtime may not change: each bump adds a uniquely named object instead.
    """
    names = sorted(e.name for e in open_store(root).listdir(COMPACTION_DIR)[1]
                   if e.name.startswith(_EPOCH_PREFIX))
    return 0 if not names else int(digest("\n".join(names))[:15], 16) or 1


def _bump_epoch(store: Store) -> None:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    store.put(f"{COMPACTION_DIR}/{_EPOCH_PREFIX}{stamp}-{secrets.token_hex(8)}", b"")


def _prune_epoch(store: Store) -> None:
    """Delete epoch objects over an hour old: a reader compares two listings taken around one
    query, so only a bump newer than the query must still be there."""
    cutoff = time.time() - LOCK_STALE_S
    for entry in store.listdir(COMPACTION_DIR)[1]:
        if entry.name.startswith(_EPOCH_PREFIX) and entry.mtime < cutoff:
            store.delete(entry.rel)


# --- locks ---------------------------------------------------------------------------------


class _RemoteLock:
    """A partition lock object; creation and take-over are conditional PUTs."""

    def __init__(self, store: Store, part: _Partition, conditional: bool) -> None:
        name = f"{part.table}.{digest(part.value)}.{part.date}.lock"
        self.store = store
        self.rel = f"{COMPACTION_DIR}/{name}"
        self.token = secrets.token_hex(8)
        self.conditional = conditional
        self.etag = ""
        self.held = False

    def _payload(self) -> bytes:
        now = time.time()
        return json.dumps({
            "host": host_tag(), "pid": os.getpid(), "token": self.token,
            "time": _dt.datetime.fromtimestamp(now, _dt.UTC).isoformat(),
            "expires": now + LOCK_STALE_S,
        }).encode()

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when a live compactor does."""
        for _ in range(2):  # one take-over, then one retry
            if self._create():
                self.held = True
                return True
            got = self.store.read_tagged(self.rel)
            if got is None:
                continue  # released between our attempt and the read
            content, etag = got
            if not _stale(content):
                return False
            if self._take_over(etag):
                self.held = True
                return True
            return False
        return False

    def _create(self) -> bool:
        if not self.conditional:  # advisory: only safe with one compactor per prefix
            if self.store.read_tagged(self.rel) is not None:
                return False
            self.store.put(self.rel, self._payload())
            return self._reads_mine()
        try:
            self.etag = self.store.create(self.rel, self._payload())
        except PreconditionFailed:
            return False
        return True

    def _take_over(self, etag: str) -> bool:
        if not self.conditional:
            self.store.put(self.rel, self._payload())
            return self._reads_mine()
        try:
            self.etag = self.store.replace(self.rel, self._payload(), etag)
        except PreconditionFailed:
            return False  # another compactor took it over first
        return True

    def _reads_mine(self) -> bool:
        got = self.store.read_tagged(self.rel)
        if got is None or self.token.encode() not in got[0]:
            return False
        self.etag = got[1]
        return True

    def still_mine(self) -> bool:
        """Heartbeat: renew the expiry, and check that nobody took the lock over."""
        got = self.store.read_tagged(self.rel)
        if got is None or self.token.encode() not in got[0]:
            return False
        return self._take_over(got[1])

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(OSError, PreconditionFailed):
                if self.still_mine():
                    self.store.delete(self.rel)
        self.held = False


def _stale(content: bytes) -> bool:
    """Expired (past its expiry, an hour after its last renewal), or its pid here is dead."""
    try:
        owner = json.loads(content)
        if time.time() > float(owner["expires"]):
            return True
        return bool(owner["host"] == host_tag() and not _pid_alive(int(owner["pid"])))
    except (ValueError, KeyError, TypeError):
        return False


def supports_conditional_writes(store: Store) -> bool:
    """Whether the store refuses a second `If-None-Match: *` PUT of one key (AWS S3 since
    2024, SeaweedFS, MinIO do; some S3-compatible stores silently ignore the header)."""
    probe = f"{COMPACTION_DIR}/.probe-{secrets.token_hex(8)}"
    try:
        store.create(probe, b"1")
        try:
            store.create(probe, b"2")
        except PreconditionFailed:
            return True
        return False
    finally:
        store.delete(probe)


# --- the compactor -------------------------------------------------------------------------


class _RemoteCompactor:
    def __init__(self, store: Store, compression_level: int) -> None:
        self.store = store
        self.writer_id = f"compact-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.level = compression_level
        self.seq = 0

    def recover(self, part: _Partition) -> tuple[int, int]:
        """Under the partition's lock, finish what dead compactors left: (rolled back, forward)."""
        jobs: dict[str, list[str]] = {}
        for name in marker_names(self.store.root):
            marker = read_marker(self.store.root, name)
            if marker is not None and marker.partition == part.rel:
                jobs.setdefault(marker.job, []).append(name)
        back = forward = 0
        for job, names in sorted(jobs.items()):
            markers = [m for m in (read_marker(self.store.root, n) for n in names) if m]
            if not markers:
                continue
            if any(m.committed for m in markers):  # roll forward: the target is in
                for source in markers[0].sources:
                    self.store.delete(source)
                self.store.delete(f"{COMPACTION_DIR}/{job}{PENDING}")
                self.store.delete(f"{COMPACTION_DIR}/{job}{COMMITTED}")
                forward += 1
            else:  # roll back: the target must go before the marker stops hiding it
                self.store.delete(markers[0].target)
                self.store.delete(f"{COMPACTION_DIR}/{job}{PENDING}")
                back += 1
        return back, forward

    def partition(self, part: _Partition, lock: _RemoteLock,
                  target_size: int) -> PartitionResult:
        return merge_bins(part, _data_files(self.store, part.rel), target_size, lock,
                          lambda group: self._merge(part, group, lock))

    def _merge(self, part: _Partition, group: list[_File],
               lock: _RemoteLock) -> tuple[int, int]:
        self.seq += 1
        job = f"{self.writer_id}-{self.seq:08d}"
        name = data_file_name(self.writer_id, self.seq, group[0].version)
        target = f"{part.rel}/{name}"
        pending = f"{COMPACTION_DIR}/{job}{PENDING}"
        committed = f"{COMPACTION_DIR}/{job}{COMMITTED}"
        sources = [f"{part.rel}/{f.name}" for f in group]

        tables = []
        for rel in sources:
            with self.store.open_input(rel) as fh:
                tables.append(pq.ParquetFile(fh).read())
        merged = pa.concat_tables(tables)
        sink = pa.BufferOutputStream()
        write_parquet(merged, sink, part.table, self.level, sort=True)
        data = sink.getvalue()
        _hook("written")
        marker = json.dumps({
            "table": part.table, "label": part.label, "date": part.date,
            "partition": part.rel, "target": target, "sources": sources,
            "host": host_tag(), "pid": os.getpid(),
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
        }).encode()
        step = "start"
        try:
            self.store.put(pending, marker)
            step = "pending"
            _hook(step)
            _bump_epoch(self.store)  # after the marker: see storage.catalog for why
            if not lock.still_mine():
                raise _LostLock(part.rel)
            step = "publishing"
            self.store.put(target, data)
            step = "visible"
            _hook(step)
            step = "committing"
            self.store.put(committed, marker)
            step = "committed"
        except BaseException:
            if step in ("pending", "publishing", "visible"):
                # Undo in reverse, and stop at the first failure: the pending marker must
                # keep hiding the target until the target is gone (recovery finishes it).
                with contextlib.suppress(Exception):
                    self.store.delete(target)
                    self.store.delete(pending)
            # "committing": whether the committed marker landed is unknown; both markers are
            # left for recovery, which rolls forward if it did and back if it did not.
            raise
        # Committed: from here on a failure leaves the marker for recovery to roll forward.
        self.store.delete(pending)
        _hook("committed")
        for rel in sources:
            self.store.delete(rel)
            _hook("source_deleted")
        self.store.delete(committed)
        _hook("done")
        return merged.num_rows, int(data.size)


def _data_files(store: Store, rel: str) -> list[_File]:
    found: list[_File] = []
    for entry in store.listdir(rel)[1]:
        match = _DATA_FILE.match(entry.name)
        if match is not None:
            found.append(_File(entry.mtime, entry.name, entry.size, match.group(1)))
    return sorted(found)


def _partitions(store: Store, label: str | None) -> dict[_Partition, list[_File]]:
    """Every partition with its data files: one recursive LIST per table."""
    wanted = None if label is None else escape_label(label)
    found: dict[_Partition, list[_File]] = {}
    for table in TABLES:
        for entry in store.walk(table):
            parts = entry.rel.split("/")
            match = _DATA_FILE.match(parts[-1])
            if match is None or len(parts) != 4 or not parts[1].startswith("label=") \
                    or not parts[2].startswith("date="):
                continue
            value, date = parts[1].removeprefix("label="), parts[2].removeprefix("date=")
            if _DATE.match(date) is None or (wanted is not None and value != wanted):
                continue
            found.setdefault(_Partition(table, value, date), []).append(
                _File(entry.mtime, parts[-1], entry.size, match.group(1)))
    return {p: sorted(files) for p, files in found.items()}


def compact(root: str, *, label: str | None, before: str | _dt.date | None,
            target_size: int, progress: Progress | None) -> CompactionReport:
    """`storage.compact.compact` for an `s3://` root (same report, same guarantees)."""
    started = time.perf_counter()
    settings = get_settings()
    cutoff = _cutoff(before)
    store = open_store(root)
    conditional = supports_conditional_writes(store)
    if not conditional:
        logger.warning(
            "xray-lake: the object store at %s ignores conditional writes (If-None-Match): "
            "compaction locks are advisory only, so run a single compactor per lake prefix",
            root)
    compactor = _RemoteCompactor(store, settings.compression_level)

    marked = set()
    for name in marker_names(root):
        marker = read_marker(root, name)
        part = None if marker is None else _partition_of(marker.partition)
        if part is not None:
            marked.add(part)
    outcome = _run_pass(
        compactor, lambda part: _RemoteLock(store, part, conditional), marked,
        lambda: [p for p, files in sorted(_partitions(store, label).items())
                 if p.date < cutoff and _bins(files, target_size)],
        target_size, progress)
    if outcome.results:
        with contextlib.suppress(OSError):
            _prune_epoch(store)
    return outcome.report(started, cutoff)
