"""DuckDB views `runs`, `stages`, `candidates` over a lake root (typed empty views for an empty lake)."""

from __future__ import annotations

import fnmatch
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from xray_lake.errors import LakeReadError
from xray_lake.records.schema import SCHEMAS, table_schema
from xray_lake.storage.compact import compaction_epoch, marker_names, read_marker
from xray_lake.storage.layout import version_glob

HIVE_TYPES = "{'label': 'VARCHAR', 'date': 'VARCHAR'}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_VERSION = re.compile(r"^part-v(\d+)-.*\.parquet$")


def schema_versions(root: str, table: str) -> list[int]:
    """The schema versions that have published files in a table (listing names only)."""
    found: set[int] = set()
    base = os.path.join(root, table)
    if not os.path.isdir(base):
        return []
    for _dirpath, _dirs, files in os.walk(base):
        for name in fnmatch.filter(files, "part-v*.parquet"):
            match = _VERSION.match(name)
            if match:
                found.add(int(match.group(1)))
    return sorted(found)


def has_files(root: str, table: str) -> bool:
    return bool(schema_versions(root, table))


def source_sql(root: str, table: str, versions: list[int] | None = None) -> str:
    """The FROM expression of one table: one `read_parquet` per schema version, unioned by name.

    Within a version every file has the same schema, so DuckDB reads one footer to plan and
    prunes label/date folders; `union_by_name` per file would read every footer first.
    """
    versions = versions if versions is not None else schema_versions(root, table)
    scans = [
        f"SELECT * FROM read_parquet({_literal(version_glob(root, table, v))}, "
        f"hive_partitioning = true, hive_types = {HIVE_TYPES})"
        for v in versions
    ]
    return "(" + " UNION ALL BY NAME ".join(scans) + ")"


def attach(con: Any, root: str) -> dict[str, bool]:
    """(Re)create the three views; returns which tables have data files."""
    return attach_views(con, root).present


@dataclass(frozen=True, slots=True)
class Views:
    """What the views were built from, so `Lake` knows when to rebuild them.

    `epoch` is the compaction counter read *before* the marker set was listed: a glob query is
    exact only if the counter has not moved by the time it has finished (see `attach_views`).
    """

    present: dict[str, bool]
    explicit: bool
    markers: frozenset[str]
    epoch: int


# What DuckDB says when a file it listed was deleted (merged away by compaction) before it read it.
VANISHED = ("No such file or directory", "No files found that match the pattern")


class _Vanished(Exception):
    """A file was deleted while the views were being created: list the files again."""


def attach_views(con: Any, root: str, *, explicit: bool = False) -> Views:
    """(Re)create the views: plain globs, or explicit file lists while compaction is running.

    Globs are the fast path, used when `_compaction/` holds no marker. A glob is expanded
    when a query runs, so it is exact when no merge made a file visible in the meantime:
    compactors write their marker and then bump the epoch before renaming the merged file in,
    so "no marker now and the same epoch after the query" proves no merge was half-way through
    while the glob was expanded. Otherwise (markers, or `explicit=True` after a failed
    check), the views read an explicit, consistent list of files (`consistent_files`).
    """
    for attempt in range(_SNAPSHOT_TRIES):
        try:
            return _attach_once(con, root, explicit or attempt > 0)
        except _Vanished:
            time.sleep(min(0.001 * attempt, 0.02))
    raise LakeReadError(
        f"the lake at {root} kept changing while its views were created "
        f"({_SNAPSHOT_TRIES} tries): too many compactions at once; retry"
    )


def _attach_once(con: Any, root: str, explicit: bool) -> Views:
    epoch = compaction_epoch(root)
    markers = marker_names(root)
    if not markers and not explicit:
        return Views(_attach_globs(con, root), False, markers, epoch)
    files, markers, epoch = consistent_files(root)
    present: dict[str, bool] = {}
    for table in SCHEMAS:
        by_version = files.get(table, {})
        present[table] = bool(by_version)
        if by_version:
            scans = [
                f"SELECT * FROM read_parquet([{', '.join(_literal(p) for p in paths)}], "
                f"hive_partitioning = true, hive_types = {HIVE_TYPES})"
                for _v, paths in sorted(by_version.items())
            ]
            _create_view(con, root, table, "(" + " UNION ALL BY NAME ".join(scans) + ")")
        else:
            _create_empty_view(con, table)
    return Views(present, True, markers, epoch)


def consistent_files(root: str) -> tuple[dict[str, dict[int, list[str]]], frozenset[str], int]:
    """Data files readers should see, per table and schema version, during compaction.

    Reads the markers (M1), lists the files, lists the markers again (M2); retries until
    M1 == M2 and the epoch did not move. Then every merge is seen in one state: the target of
    a pending merge is dropped (its sources are still there), the sources of a committed one
    are dropped (its target is in). A merge that started and finished between M1 and M2 moves
    the epoch. Files deleted after the listing make the query fail, and `Lake` retries it.
    """
    for attempt in range(_SNAPSHOT_TRIES):
        epoch = compaction_epoch(root)
        names = marker_names(root)
        markers = [read_marker(root, name) for name in sorted(names)]
        found = [m for m in markers if m is not None]
        files = _list_files(root) if len(found) == len(markers) else None
        if files is not None and marker_names(root) == names and compaction_epoch(root) == epoch:
            hidden = {m.target for m in found if not m.committed}
            hidden.update(s for m in found if m.committed for s in m.sources)
            result: dict[str, dict[int, list[str]]] = {}
            for table, version, rel in files:
                if rel not in hidden:
                    result.setdefault(table, {}).setdefault(version, []).append(f"{root}/{rel}")
            return result, names, epoch
        time.sleep(min(0.001 * attempt, 0.02))
    raise LakeReadError(
        f"the lake at {root} kept changing while its files were listed "
        f"({_SNAPSHOT_TRIES} tries): too many compactions at once; retry the query"
    )


_SNAPSHOT_TRIES = 50


def _list_files(root: str) -> list[tuple[str, int, str]]:
    """(table, schema version, path under root) of every published data file."""
    found: list[tuple[str, int, str]] = []
    for table in SCHEMAS:
        for label_dir in _subdirs(os.path.join(root, table)):
            for date_dir in _subdirs(os.path.join(root, table, label_dir)):
                rel = f"{table}/{label_dir}/{date_dir}"
                try:
                    names = os.listdir(os.path.join(root, rel))
                except OSError:
                    continue
                for name in names:
                    match = _VERSION.match(name)
                    if match:
                        found.append((table, int(match.group(1)), f"{rel}/{name}"))
    return found


def _subdirs(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []


def _attach_globs(con: Any, root: str) -> dict[str, bool]:
    present: dict[str, bool] = {}
    for table in SCHEMAS:
        versions = schema_versions(root, table)
        present[table] = bool(versions)
        if versions:
            _create_view(con, root, table, source_sql(root, table, versions))
        else:
            _create_empty_view(con, table)
    return present


def _create_view(con: Any, root: str, table: str, source: str) -> None:
    try:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")
    except duckdb.Error as exc:
        if any(text in str(exc) for text in VANISHED):
            raise _Vanished from None
        raise LakeReadError(
            f"cannot open table {table!r} of the lake at {root}: "
            f"{str(exc).strip().splitlines()[0]}. Run `xray-lake doctor --fix` to move "
            "unreadable files to _quarantine/."
        ) from None


def _create_empty_view(con: Any, table: str) -> None:
    empty = pa.Table.from_batches([], table_schema(table))
    con.register(f"__xray_empty_{table}", empty)
    con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM __xray_empty_{table}")
