"""`compact()`: the public entry point of batch compaction, on a local or an `s3://` lake."""

from __future__ import annotations

import datetime as _dt

from xray_lake.config import get_settings
from xray_lake.storage.compaction.plan import DEFAULT_TARGET_SIZE, Progress, Stop, cutoff
from xray_lake.storage.compaction.report import CompactionReport
from xray_lake.storage.s3_clients import is_remote

__all__ = ["DEFAULT_TARGET_SIZE", "CompactionReport", "Progress", "compact"]


def compact(
    root: str | None = None,
    *,
    label: str | None = None,
    before: str | _dt.date | None = None,
    target_size: int = DEFAULT_TARGET_SIZE,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> CompactionReport:
    """Merge the small files of each partition (table x label x date) into large sorted files.

    Only partitions dated before `before` (default: today, UTC, so the partition still being
    written is left alone) and, with `label`, that label's. A file is small below
    `target_size / 2` bytes; partitions with fewer than 2 small files are skipped. Rows are
    sorted by the table's `SORT_KEYS` (records.schema) and written like every data file
    (`write_parquet`, `compression_level` and `fsync` from the settings). `stop`, asked
    before each partition and each merge, ends the pass early when it returns True.

    Each merge: lock the partition (a lock whose pid is dead on this host, or untouched for an
    hour, is stolen; a live one skips the partition), write the merged file under a hidden temp
    name, write a `pending` marker naming target and sources and bump the epoch, rename the
    file in, commit the marker, record the merged names, delete the sources, the marker, the
    lock. `xr.Lake` hides the target of a pending merge and the sources of a committed one, so
    its readers never see a row twice or miss one. Markers a killed compactor left are first
    rolled back (pending) or forward (committed).

    Readers with no xray-lake code (a raw DuckDB/polars/Spark glob) DO count a partition's
    rows twice between the rename and the deletion of the sources (milliseconds per merge):
    compact while they are idle. On object storage (`s3://`) the same protocol runs with
    conditional PUTs for the locks (`storage.compaction.remote`, docs/object-storage.md).
    See docs/compaction.md.

    Examples
    --------
    >>> import xray_lake as xr
    >>> report = xr.compact("/srv/lake", before="2024-06-01")  # doctest: +SKIP
    >>> report.files_in, report.files_out, report.errors  # doctest: +SKIP
    (120, 3, ())
    """
    settings = get_settings()
    root = root or settings.root
    if target_size < 1:
        raise ValueError(f"target_size must be a positive number of bytes, got {target_size}")
    first_kept = cutoff(before)
    if is_remote(root):
        from xray_lake.storage.compaction.remote import compact_remote

        return compact_remote(root, settings, label=label, cutoff=first_kept,
                              target_size=target_size, progress=progress, stop=stop)
    from xray_lake.storage.compaction.local import compact_local

    return compact_local(root, settings, label=label, cutoff=first_kept,
                         target_size=target_size, progress=progress, stop=stop)
