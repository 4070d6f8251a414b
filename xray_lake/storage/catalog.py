"""DuckDB views `runs`, `stages`, `candidates` over a lake root (typed empty views for an empty lake)."""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from xray_lake.errors import LakeReadError
from xray_lake.records.promoted import PROMOTED_PREFIX
from xray_lake.records.schema import (
    CANDIDATES,
    SCHEMAS,
    table_schema,
    unify_types,
)
from xray_lake.storage import confine
from xray_lake.storage.compaction.protocol import compaction_epoch, marker_names, read_marker
from xray_lake.storage.layout import FIELDS_DIR, VERSION_TOKEN, version_glob
from xray_lake.storage.s3_clients import is_remote

HIVE_TYPES = "{'label': 'VARCHAR', 'date': 'VARCHAR'}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The version token: the schema version, and for candidates files with promoted fields their
# tag (`1p<tag>`): each token is read by one read_parquet over files of one schema.
_VERSION = re.compile(rf"^part-v({VERSION_TOKEN})-.*\.parquet$")


def schema_versions(root: str, table: str) -> list[str]:
    """The version tokens that have published files in a table (listing names only)."""
    if is_remote(root):
        return sorted({version for t, version, _rel in _list_remote(root, (table,))})
    return _local_versions(root, table)[0]


def _local_versions(root: str, table: str) -> tuple[list[str], bool]:
    """The version tokens of a local table's files, and whether its folders hold a link.

    DuckDB's globs follow links, so a table with one is read from explicit lists that skip
    them (`storage.confine`: nothing outside the root is ever read)."""
    found: set[str] = set()
    linked = False
    base = os.path.join(root, table)
    if os.path.islink(base):
        return [], True
    for dirpath, dirs, files in os.walk(base):
        for name in dirs:
            linked = linked or os.path.islink(os.path.join(dirpath, name))
        for name in fnmatch.filter(files, "part-v*.parquet"):
            match = _VERSION.match(name)
            if match:
                if os.path.islink(os.path.join(dirpath, name)):
                    linked = True
                else:
                    found.add(match.group(1))
    return sorted(found), linked


def has_files(root: str, table: str) -> bool:
    return bool(schema_versions(root, table))


def source_sql(root: str, table: str, versions: list[str] | None = None,
               con: Any = None) -> str:
    """The FROM expression of one table: one `read_parquet` per version token, unioned by name.

    Within a token every file has the same schema, so DuckDB reads one footer to plan and
    prunes label/date folders; `union_by_name` per file would read every footer first.
    With `con`, promoted columns whose type differs between tokens are cast to one type.
    """
    versions = versions if versions is not None else schema_versions(root, table)
    return union_sql([(v, _literal(version_glob(root, table, v))) for v in versions], con)


def _scan(files: str) -> str:
    return (f"SELECT * FROM read_parquet({files}, hive_partitioning = true, "
            f"hive_types = {HIVE_TYPES})")


def union_sql(groups: list[tuple[str, str]], con: Any = None) -> str:
    """UNION ALL BY NAME of one scan per (version token, files SQL).

    A promoted column seen with several types across tokens is cast to the type
    `records.schema.unify_types` picks (int64 + float64 -> DOUBLE, any other mix -> VARCHAR);
    finding those types reads one footer per token that has promoted columns.
    """
    scans = [_scan(files) for _token, files in groups]
    tagged = [i for i, (token, _files) in enumerate(groups) if "p" in token]
    if con is not None and len(tagged) > 1:
        found = {i: _promoted_types(con, scans[i]) for i in tagged}
        seen: dict[str, set[pa.DataType]] = {}
        for types in found.values():
            for name, kind in types.items():
                seen.setdefault(name, set()).add(kind)
        unified = {name: unify_types(kinds) for name, kinds in seen.items() if len(kinds) > 1}
        for i, types in found.items():
            casts = [f'CAST("{n}" AS {_SQL_TYPES.get(t, "VARCHAR")}) AS "{n}"'
                     for n, t in unified.items() if n in types and types[n] != t]
            if casts:
                scans[i] = scans[i].replace("SELECT *", f"SELECT * REPLACE ({', '.join(casts)})",
                                            1)
    return "(" + " UNION ALL BY NAME ".join(scans) + ")"


_SQL_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
              pa.string(): "VARCHAR"}
_ARROW_TYPES = {sql: arrow for arrow, sql in _SQL_TYPES.items()}


def _promoted_types(con: Any, scan: str) -> dict[str, pa.DataType]:
    """The promoted columns of one scan and their types (as Arrow types; others: string)."""
    try:
        rows = con.execute(f"DESCRIBE {scan}").fetchall()
    except duckdb.Error as exc:
        if any(text in str(exc) for text in VANISHED):
            raise _Vanished from None
        raise LakeReadError(f"cannot read the schema of {scan}: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    return {str(name): _ARROW_TYPES.get(str(kind), pa.string()) for name, kind, *_ in rows
            if str(name).startswith(PROMOTED_PREFIX) and str(name) not in CANDIDATES.names}


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
    tags: frozenset[str] = frozenset()  # promoted-fields tags the candidates view reads


def fields_tags(root: str) -> frozenset[str]:
    """The promoted-fields tags registered under `<root>/_fields` (one listdir; local roots).

    A view built without one of them misses that tag's files: `Lake` rebuilds it."""
    if is_remote(root):
        return frozenset()
    try:
        return frozenset(n for n in os.listdir(os.path.join(root, FIELDS_DIR))
                         if not n.startswith("."))
    except OSError:
        return frozenset()


def _tags(tokens: Iterable[str]) -> frozenset[str]:
    return frozenset(t.partition("p")[2] for t in tokens if "p" in t)


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
    # Object storage: always explicit lists from one LIST per table (a glob there would cost
    # DuckDB one LIST per label and date folder on every query); `consistent_files` reads
    # the epoch and the markers itself.
    remote = is_remote(root)
    epoch = 0 if remote else compaction_epoch(root)
    markers = frozenset() if remote else marker_names(root)
    if not markers and not explicit and not remote:
        globbed = _attach_globs(con, root)
        if globbed is not None:
            return Views(globbed[0], False, markers, epoch, globbed[1])
    files, markers, epoch = consistent_files(root)
    present: dict[str, bool] = {}
    for table in SCHEMAS:
        by_version = files.get(table, {})
        present[table] = bool(by_version)
        if by_version:
            groups = [(v, f"[{', '.join(_literal(p) for p in paths)}]")
                      for v, paths in sorted(by_version.items())]
            _create_view(con, root, table, union_sql(groups, con))
        else:
            _create_empty_view(con, table)
    return Views(present, True, markers, epoch, _tags(files.get("candidates", {})))


def consistent_files(root: str) -> tuple[dict[str, dict[str, list[str]]], frozenset[str], int]:
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
            # Object storage commits by writing the committed marker before deleting the
            # pending one: while both exist, the merge counts as committed.
            done = {m.job for m in found if m.committed}
            hidden = {m.target for m in found if not m.committed and m.job not in done}
            hidden.update(s for m in found if m.committed for s in m.sources)
            result: dict[str, dict[str, list[str]]] = {}
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


def _list_files(root: str) -> list[tuple[str, str, str]]:
    """(table, version token, path under root) of every published data file."""
    if is_remote(root):
        return _list_remote(root, tuple(SCHEMAS))
    found: list[tuple[str, str, str]] = []
    for table in SCHEMAS:
        if os.path.islink(os.path.join(root, table)):
            continue  # never read through a link: storage.confine
        for label_dir in _subdirs(os.path.join(root, table)):
            for date_dir in _subdirs(os.path.join(root, table, label_dir)):
                rel = f"{table}/{label_dir}/{date_dir}"
                for name in confine.files(os.path.join(root, rel)):
                    match = _VERSION.match(name)
                    if match:
                        found.append((table, match.group(1), f"{rel}/{name}"))
    return found


def _list_remote(root: str, tables: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """`_list_files` on object storage: one recursive LIST per table, same depth rule."""
    from xray_lake.storage.object_store import open_store

    store = open_store(root)
    found: list[tuple[str, str, str]] = []
    for table in tables:
        for entry in store.walk(table):
            parts = entry.rel.split("/")
            match = _VERSION.match(parts[-1])
            if match and len(parts) == 4 and not any(p.startswith(".") for p in parts[1:3]):
                found.append((table, match.group(1), entry.rel))
    return found


def _subdirs(path: str) -> list[str]:
    return confine.subdirs(path)


def _attach_globs(con: Any, root: str) -> tuple[dict[str, bool], frozenset[str]] | None:
    """Glob views; None (nothing created) when a table holds a link: list files instead."""
    present: dict[str, bool] = {}
    tags: frozenset[str] = frozenset()
    listed = {}
    for table in SCHEMAS:
        listed[table], linked = _local_versions(root, table)
        if linked:
            return None
    for table in SCHEMAS:
        versions = listed[table]
        present[table] = bool(versions)
        if table == "candidates":
            tags = _tags(versions)
        if versions:
            _create_view(con, root, table, source_sql(root, table, versions, con))
        else:
            _create_empty_view(con, table)
    return present, tags


def _create_view(con: Any, root: str, table: str, source: str) -> None:
    try:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")
    except duckdb.Error as exc:
        if any(text in str(exc) for text in VANISHED):
            raise _Vanished from None
        raise LakeReadError(
            f"cannot open table {table!r} of the lake at {root}: "
            f"{_error_line(exc)}. Run `xray-lake doctor --fix` to move "
            "unreadable files to _quarantine/."
        ) from None


def _error_line(exc: BaseException) -> str:
    """DuckDB's first line, or the last one of a Python filesystem's traceback (s3:// roots)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _create_empty_view(con: Any, table: str) -> None:
    empty = pa.Table.from_batches([], table_schema(table))
    con.register(f"__xray_empty_{table}", empty)
    con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM __xray_empty_{table}")
