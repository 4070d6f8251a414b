"""Compaction of a local lake: temp file, marker, rename, commit, delete; recovery of killed merges."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.config import Settings
from xray_lake.errors import XrayLakeError
from xray_lake.storage import confine
from xray_lake.storage.compaction.locks import LocalLock
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
    COMPACT_TEMP,
    COMPACTION_DIR,
    DATA_FILE,
    DATE,
    EPOCH_FILE,
    MERGED_DIR,
    PENDING,
    Partition,
    compaction_dir,
    marker_names,
    merged_path,
    partition_of,
    read_marker,
)
from xray_lake.storage.compaction.report import CompactionReport, PartitionResult
from xray_lake.storage.fs import fsync_dir, fsync_file, write_parquet
from xray_lake.storage.layout import (
    TABLES,
    data_file_name,
    escape_label,
    host_tag,
    temp_file_name,
)


def partitions(root: str, label: str | None) -> Iterator[Partition]:
    """Every partition folder of the lake (of one label), never through a symbolic link."""
    wanted = None if label is None else "label=" + escape_label(label)
    for table in TABLES:
        if os.path.islink(os.path.join(root, table)):
            continue  # never follow a link out of (or around) the lake: storage.confine
        for label_dir in sorted(confine.subdirs(os.path.join(root, table))):
            if not label_dir.startswith("label=") or (wanted and label_dir != wanted):
                continue
            for date_dir in sorted(confine.subdirs(os.path.join(root, table, label_dir))):
                date = date_dir.removeprefix("date=")
                if date_dir.startswith("date=") and DATE.match(date):
                    yield Partition(table, label_dir.removeprefix("label="), date)


def data_files(folder: str) -> list[DataFile]:
    """The published data files of one partition folder, oldest first (links skipped)."""
    found: list[DataFile] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        match = DATA_FILE.match(entry.name)
        if match is None or entry.is_symlink():
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        found.append(DataFile(st.st_mtime, entry.name, st.st_size, match.group(1)))
    return sorted(found)


class LocalCompactor:
    """Merges the bins of one partition at a time; the caller holds the partition's lock."""

    def __init__(self, root: str, compression_level: int, fsync: bool) -> None:
        self.root = root
        self.writer_id = f"compact-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.level = compression_level
        self.fsync = fsync
        self.seq = 0
        self.cdir = compaction_dir(root)

    def recover(self, part: Partition) -> tuple[int, int]:
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
                if COMPACT_TEMP.match(entry.name):
                    self._unlink(entry.path)
        return back, forward

    def partition(self, part: Partition, lock: LocalLock, target_size: int,
                  stop: Stop | None = None) -> PartitionResult:
        confine.check_inside(self.root, part.rel)
        folder = os.path.join(self.root, part.rel)
        return merge_bins(part, data_files(folder), target_size, lock,
                          lambda group: self._merge(part, folder, group, lock), stop)

    def _merge(self, part: Partition, folder: str, group: list[DataFile],
               lock: LocalLock) -> tuple[int, int]:
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
            hook(done)
            self._write_json(pending, {
                "table": part.table, "label": part.label, "date": part.date,
                "partition": part.rel, "target": f"{part.rel}/{name}",
                "sources": [f"{part.rel}/{f.name}" for f in group],
                "host": host_tag(), "pid": os.getpid(),
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
            })
            done = "pending"
            hook(done)
            with open(os.path.join(self.cdir, EPOCH_FILE), "ab") as fh:
                fh.write(b".")  # after the marker: see storage.catalog for why
            if not lock.still_mine():
                raise LostLock(part.rel)
            os.rename(temp, final)
            done = "visible"
            self._sync(folder)
            hook(done)
            os.rename(pending, committed)
            done = "committed"
            self._sync(self.cdir)
            hook(done)
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
            hook("source_deleted")
        self._sync(folder)
        self._unlink(committed)
        self._sync(self.cdir)
        hook("done")
        return merged.num_rows, os.path.getsize(final)

    def _record_merged(self, part: Partition, names: list[str]) -> None:
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


def compact_local(root: str, settings: Settings, *, label: str | None, cutoff: str,
                  target_size: int, progress: Progress | None, stop: Stop | None = None,
                  wanted: Wanted | None = None) -> CompactionReport:
    """One pass over a local lake: recover, then merge every partition dated before `cutoff`
    (or, with `wanted`, every partition it selects)."""
    wanted = wanted or dated_before(cutoff, target_size)
    started = time.perf_counter()
    for rel in (COMPACTION_DIR, f"{COMPACTION_DIR}/{EPOCH_FILE}", MERGED_DIR):
        try:
            confine.check_inside(root, rel)
        except OSError as exc:
            raise XrayLakeError(str(exc)) from None
    os.makedirs(compaction_dir(root), exist_ok=True)
    compactor = LocalCompactor(root, settings.compression_level, settings.fsync)
    marked = {_marker_partition(root, n) for n in marker_names(root)}
    outcome = run_pass(
        compactor, lambda part: LocalLock(root, part), (p for p in marked if p is not None),
        lambda: [p for p in partitions(root, label)
                 if wanted(p, data_files(os.path.join(root, p.rel)))],
        target_size, progress, stop, (OSError, pa.ArrowException))
    return outcome.report(started, cutoff)


def _marker_partition(root: str, name: str) -> Partition | None:
    marker = read_marker(root, name)
    return None if marker is None else partition_of(marker.partition)
