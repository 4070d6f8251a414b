"""An in-memory copy of the small tables (`runs`, `stages`) of a local lake, for a long-lived `Lake`.

Why: a compacted lake still has one file per table, label and date, and DuckDB pays a fixed
cost per Parquet file on every query (opening it, its footer, its row groups): the headline
question spends most of its time there, not on the rows themselves (benchmarks/RESULTS.md).
The runs and stages tables are small (one row per run or stage), so a `Lake` that keeps
answering questions may hold them in DuckDB memory.

Never stale: before every `Lake` query (`sql`, `find`, `query()`, `journey`, ...), each
copy's table is listed again (names only; a published file is immutable and its name never
reused) and the copy is brought to exactly that list first: rows of files gone are deleted,
new files are read in. The listing is taken in the same state as the glob views' (no
compaction marker, and `Lake` re-runs the query if the compaction epoch moved); while the
views are explicit file lists (a compaction is running) the copies are not used at all.
While a copy is current, the view (`stages`) reads it; SQL run on `lake.connection`
directly reads the views as the last `Lake` query left them (as for explicit views).

Bounded: a table is copied only once it has been read by `LOAD_AFTER` queries (a one-shot
command never pays the copy), and only while all copies together stay under `max_bytes`
(measured in DuckDB memory after the copy); a table that does not fit is read from its files
for the rest of the `Lake`'s life. `xr.Lake(cache_bytes=0)` turns the cache off.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb

from xray_lake.storage import confine
from xray_lake.storage.catalog import HIVE_TYPES, source_sql
from xray_lake.storage.layout import VERSION_TOKEN

CACHED_TABLES = ("runs", "stages")
"""Tables with one row per run or stage; `candidates` (a row per candidate) is never copied."""
LOAD_AFTER = 3
"""A table is copied into memory by the query that reads it for the LOAD_AFTER-th time (the
default of `Lake(cache_after=)`: a process that has asked twice is likely to ask again)."""
DEFAULT_MAX_BYTES = 256 * 2**20
SCHEMA = "xray_cache"  # the attached in-memory database holding the copies
_FILE = "__xray_file"  # the column naming each row's data file (to drop a file's rows)
_PART = re.compile(rf"^part-v({VERSION_TOKEN})-.*\.parquet$")
_WORDS = {t: re.compile(rf"\b{t}\b", re.IGNORECASE) for t in CACHED_TABLES}


def list_table(root: str, table: str) -> frozenset[str]:
    """Paths of the published data files of one table of a local lake (names only).

    The same rule as the explicit views (`catalog._list_files`): `<table>/<label>/<date>/`
    folders not starting with a dot, `part-v<token>-*.parquet` files."""
    found: list[str] = []
    base = os.path.join(root, table)
    if os.path.islink(base):
        return frozenset()  # links are never followed (storage.confine)
    for label in confine.subdirs(base):
        for date in confine.subdirs(f"{base}/{label}"):
            folder = f"{base}/{label}/{date}"
            found += [f"{folder}/{n}" for n in confine.files(folder) if _PART.match(n)]
    return frozenset(found)


@dataclass
class _Copy:
    files: frozenset[str] = frozenset()
    rows_deleted: int = 0  # rows deleted since the copy was built (tombstones DuckDB scans)
    rows: int = 0
    bytes: int = 0


@dataclass
class TableCache:
    """The copies of one `Lake`: `prepare(sql)` before each query keeps them current.

    The copies live in an attached in-memory database `xray_cache` (compressed, unlike plain
    in-memory tables) as `<table>_rows`, with the file of each row; the lake's
    view of a copied table selects from it directly (each view level costs planning time).
    """

    con: Any
    root: str
    max_bytes: int = DEFAULT_MAX_BYTES
    load_after: int = LOAD_AFTER
    copies: dict[str, _Copy] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # too big, or not copied faithfully
    swapped: set[str] = field(default_factory=set)  # lake views now reading a copy
    _attached: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self, sql: str) -> None:
        """Bring every copy up to date, copy tables `sql` names often enough, point the views.

        Every copy is synced, whichever tables `sql` names (a view may read another)."""
        named = [t for t in CACHED_TABLES if _WORDS[t].search(sql)]
        if not named and not self.copies:
            return
        with self._lock:
            for table in named:
                self.reads[table] = self.reads.get(table, 0) + 1
            for table in CACHED_TABLES:
                if table in self.copies or (
                        table in named and table not in self.skipped
                        and self.reads[table] >= self.load_after):
                    self._sync(table)
                if table in self.copies and table not in self.swapped:
                    _run(self.con, f"CREATE OR REPLACE VIEW main.{table} AS {_select(table)}")
                    self.swapped.add(table)

    def views_rebuilt(self) -> None:
        """`Lake` re-created the views from the files: none reads a copy any more."""
        self.swapped.clear()

    # --- maintenance -------------------------------------------------------------------------

    def _sync(self, table: str) -> None:
        files = list_table(self.root, table)
        copy = self.copies.get(table)
        if copy is not None and copy.files == files:
            return
        if not files:
            self._drop(table)
            return
        if copy is None or copy.rows_deleted > copy.rows:
            self._build(table, files)
            return
        gone, new = copy.files - files, files - copy.files
        try:
            before = _table_bytes(self.con)
            if gone:
                copy.rows_deleted += self.con.execute(
                    f"DELETE FROM {SCHEMA}.main.{table}_rows WHERE list_contains(?, {_FILE})",
                    [sorted(gone)]).fetchall()[0][0]
            if new:
                _run(self.con, f"INSERT INTO {SCHEMA}.main.{table}_rows BY NAME "
                               f"SELECT * FROM {_scan(sorted(new))}")
            copy.files = files
            copy.rows = self._count(table)
            copy.bytes += max(_table_bytes(self.con) - before, 0)
        except duckdb.IOException:
            self._drop(table)  # a file vanished (compaction): the query's retry lists again
            raise
        except duckdb.Error:
            self._build(table, files)  # e.g. new files with new columns: copy them all again
            return
        self._check_size(table)

    def _build(self, table: str, files: frozenset[str]) -> None:
        self._drop(table)
        con = self.con
        if not self._attached:
            _run(con, f"ATTACH IF NOT EXISTS ':memory:' AS {SCHEMA} (COMPRESS)")
            self._attached = True
        before = _table_bytes(con)
        try:
            _run(con, f"CREATE TABLE {SCHEMA}.main.{table}_rows AS "
                      f"SELECT * FROM {_scan(sorted(files))}")
            # The copy must have the columns (names, types, order) the glob view has.
            same = (con.execute(f"DESCRIBE {_select(table)}").fetchall()
                    == con.execute(f"DESCRIBE SELECT * FROM {source_sql(self.root, table, con=con)}"
                                   ).fetchall())
        except duckdb.IOException:
            self._drop(table)
            raise
        except duckdb.Error:
            same = False
        if not same:  # files of several schemas, or anything the view reads differently
            self._drop(table)
            self.skipped.add(table)  # (not copied again: the files are the reference)
            return
        self.copies[table] = _Copy(files, 0, self._count(table),
                                   max(_table_bytes(con) - before, 0))
        self._check_size(table)

    def _check_size(self, table: str) -> None:
        if sum(c.bytes for c in self.copies.values()) > self.max_bytes:
            self._drop(table)
            self.skipped.add(table)

    def _count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {SCHEMA}.main.{table}_rows")
                   .fetchall()[0][0])

    def _drop(self, table: str) -> None:
        """Forget a copy; a view reading it reads the table's files again (glob)."""
        self.copies.pop(table, None)
        if table in self.swapped:
            self.swapped.discard(table)
            _run(self.con, f"CREATE OR REPLACE VIEW main.{table} AS "
                           f"SELECT * FROM {source_sql(self.root, table, con=self.con)}")
        if self._attached:
            _run(self.con, f"DROP TABLE IF EXISTS {SCHEMA}.main.{table}_rows")


def _run(con: Any, sql: str) -> None:
    """A statement, its result read to the end (this DuckDB refuses the next statement on a
    connection with an unfinished result)."""
    con.execute(sql).fetchall()


def _select(table: str) -> str:
    """The copy as the lake's view shows a table: every column but the file column."""
    return f"SELECT * EXCLUDE ({_FILE}) FROM {SCHEMA}.main.{table}_rows"


def _scan(files: list[str]) -> str:
    """The files as one scan. Files of one version token share a schema, so DuckDB need not
    read every footer to unify them (`union_by_name` on 900 files costs seconds)."""
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    tokens = {match.group(1) for f in files if (match := _PART.match(os.path.basename(f)))}
    by_name = "union_by_name = true, " if len(tokens) > 1 else ""
    return (f"read_parquet([{listed}], hive_partitioning = true, hive_types = {HIVE_TYPES}, "
            f"{by_name}filename = '{_FILE}')")


def _table_bytes(con: Any) -> int:
    """Bytes DuckDB holds for in-memory tables (the copies; the lake's views hold none)."""
    row = con.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                      "WHERE tag = 'IN_MEMORY_TABLE'").fetchall()[0]
    return int(row[0])
