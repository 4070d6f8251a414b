"""Compaction on object storage: the local protocol without rename, locked by conditional PUTs.

Object stores have no rename and no exclusive create, so a merge of partition P goes:

1. **Lock** P (`locks.RemoteLock`): create `_compaction/<table>.<sha1(label folder)>.<date>.lock`
   with `If-None-Match: *`, holding host, pid, a token and an expiry an hour ahead; an expired
   lock, or one whose pid is dead on this host, is taken over with `If-Match: <its ETag>`.
   The holder renews it before each merge and before making anything visible.
2. **Mark**: PUT `_compaction/<job>.pending.json` naming target and sources, then PUT an
   empty `_compaction/epoch-<time>-<random>`: the set of these names is the readers' epoch
   (it changes with every merge; compaction deletes the ones older than an hour).
3. **Publish**: PUT the merged file at its final name (one request, visible when complete).
4. **Commit**: PUT `<job>.committed.json`, then DELETE the pending marker. While both exist
   the merge counts as committed (`storage.catalog`).
5. **Record** the merged names in `_merged/<partition key>/<job>`, so replay and the spool
   drain never copy one of them back (exactly once).
6. **Clean up**: DELETE the sources, the committed marker, the lock.

A compactor killed at any step leaves a pending marker (rolled back by the next run: target
deleted) or a committed one (rolled forward: names recorded, sources deleted).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import secrets
import time

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.config import Settings
from xray_lake.storage.compaction.locks import RemoteLock, supports_conditional_writes
from xray_lake.storage.compaction.plan import (
    DataFile,
    LostLock,
    Progress,
    Stop,
    Wanted,
    dated_before,
    hook,
    merge_bins,
    run_pass,
)
from xray_lake.storage.compaction.protocol import (
    COMMITTED,
    COMPACTION_DIR,
    DATA_FILE,
    DATE,
    EPOCH_PREFIX,
    LOCK_STALE_S,
    PENDING,
    Partition,
    marker_names,
    merged_object,
    partition_of,
    read_marker,
)
from xray_lake.storage.compaction.report import CompactionReport, PartitionResult
from xray_lake.storage.fs import write_parquet
from xray_lake.storage.layout import TABLES, data_file_name, escape_label, host_tag
from xray_lake.storage.object_store import Store, open_store

logger = logging.getLogger("xray_lake")


def _bump_epoch(store: Store) -> None:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    store.put(f"{COMPACTION_DIR}/{EPOCH_PREFIX}{stamp}-{secrets.token_hex(8)}", b"")


def _prune_epoch(store: Store) -> None:
    """Delete epoch objects over an hour old: a reader compares two listings taken around one
    query, so only a bump newer than the query must still be there."""
    cutoff = time.time() - LOCK_STALE_S
    for entry in store.listdir(COMPACTION_DIR)[1]:
        if entry.name.startswith(EPOCH_PREFIX) and entry.mtime < cutoff:
            store.delete(entry.rel)


class RemoteCompactor:
    """Merges the bins of one partition at a time; the caller holds the partition's lock."""

    def __init__(self, store: Store, compression_level: int) -> None:
        self.store = store
        self.writer_id = f"compact-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.level = compression_level
        self.seq = 0

    def recover(self, part: Partition) -> tuple[int, int]:
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
                self._record_merged(part, job, markers[0].sources)
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

    def partition(self, part: Partition, lock: RemoteLock, target_size: int,
                  stop: Stop | None = None) -> PartitionResult:
        return merge_bins(part, _data_files(self.store, part.rel), target_size, lock,
                          lambda group: self._merge(part, group, lock), stop)

    def _merge(self, part: Partition, group: list[DataFile],
               lock: RemoteLock) -> tuple[int, int]:
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
        hook("written")
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
            hook(step)
            _bump_epoch(self.store)  # after the marker: see storage.catalog for why
            if not lock.still_mine():
                raise LostLock(part.rel)
            step = "publishing"
            self.store.put(target, data)
            step = "visible"
            hook(step)
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
        hook("committed")
        self._record_merged(part, job, sources)
        hook("recorded")
        for rel in sources:
            self.store.delete(rel)
            hook("source_deleted")
        self.store.delete(committed)
        hook("done")
        return merged.num_rows, int(data.size)

    def _record_merged(self, part: Partition, job: str, sources: tuple[str, ...] | list[str]
                       ) -> None:
        """Name the merged sources before deleting them (`protocol.merged_names`)."""
        names = "".join(f"{rel.rpartition('/')[2]}\n" for rel in sources)
        self.store.put(merged_object(part, job), names.encode())


def _data_files(store: Store, rel: str) -> list[DataFile]:
    found: list[DataFile] = []
    for entry in store.listdir(rel)[1]:
        match = DATA_FILE.match(entry.name)
        if match is not None:
            found.append(DataFile(entry.mtime, entry.name, entry.size, match.group(1)))
    return sorted(found)


def _partitions(store: Store, label: str | None) -> dict[Partition, list[DataFile]]:
    """Every partition with its data files: one recursive LIST per table."""
    wanted = None if label is None else escape_label(label)
    found: dict[Partition, list[DataFile]] = {}
    for table in TABLES:
        for entry in store.walk(table):
            parts = entry.rel.split("/")
            match = DATA_FILE.match(parts[-1])
            if match is None or len(parts) != 4 or not parts[1].startswith("label=") \
                    or not parts[2].startswith("date="):
                continue
            value, date = parts[1].removeprefix("label="), parts[2].removeprefix("date=")
            if DATE.match(date) is None or (wanted is not None and value != wanted):
                continue
            found.setdefault(Partition(table, value, date), []).append(
                DataFile(entry.mtime, parts[-1], entry.size, match.group(1)))
    return {p: sorted(files) for p, files in found.items()}


def compact_remote(root: str, settings: Settings, *, label: str | None, cutoff: str,
                   target_size: int, progress: Progress | None, stop: Stop | None = None,
                   wanted: Wanted | None = None) -> CompactionReport:
    """One pass over an `s3://` lake: the same report and guarantees as a local one."""
    wanted = wanted or dated_before(cutoff, target_size)
    started = time.perf_counter()
    store = open_store(root)
    conditional = supports_conditional_writes(store)
    if not conditional:
        logger.warning(
            "xray-lake: the object store at %s ignores conditional writes (If-None-Match): "
            "compaction locks are advisory only, so run a single compactor per lake prefix",
            root)
    compactor = RemoteCompactor(store, settings.compression_level)
    marked = set()
    for name in marker_names(root):
        marker = read_marker(root, name)
        part = None if marker is None else partition_of(marker.partition)
        if part is not None:
            marked.add(part)
    outcome = run_pass(
        compactor, lambda part: RemoteLock(store, part, conditional), marked,
        lambda: [p for p, files in sorted(_partitions(store, label).items())
                 if wanted(p, files)],
        target_size, progress, stop, (OSError, pa.ArrowException))
    if outcome.results:
        with contextlib.suppress(OSError):
            _prune_epoch(store)
    return outcome.report(started, cutoff)
