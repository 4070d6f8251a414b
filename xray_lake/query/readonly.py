"""Read-only queries: a DuckDB connection that can read the lake root and nothing else.

`lock_down(con, root)` limits what the connection's SQL can reach, with DuckDB's own settings:
`allowed_directories` holds the root (and its resolved path), then `enable_external_access`
is turned off (no other file, URL, database or extension) and `lock_configuration` on (no
`SET` gives any of it back). DuckDB resolves symbolic links before comparing a path with the
allowed directories, so a link inside the lake that points out of it is refused too.

`check_statement(con, sql)` is the second half, for SQL that a user wrote: exactly one
statement, and only a query (`SELECT`, `WITH`, `VALUES`, `FROM`, `DESCRIBE`, `SHOW`,
`SUMMARIZE`, `EXPLAIN` of a query). COPY, ATTACH, INSTALL/LOAD, SET, PRAGMA, CALL, CREATE,
EXPORT, transactions ... are refused before DuckDB runs anything: COPY into the lake root
itself would pass the directory check, and CREATE VIEW could replace the lake's own views.

Both are skipped by `xr.Lake(root, read_only=False)` / `xray-lake query --unsafe-sql`.
See docs/security.md.
"""

from __future__ import annotations

import os
import re
from typing import Any

import duckdb

from xray_lake.errors import QueryError
from xray_lake.storage.s3_clients import is_remote

_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALYZE)?\b", re.IGNORECASE)
HINT = "(read-only queries; xr.Lake(root, read_only=False) or --unsafe-sql opt out)"


def allowed_directories(root: str) -> list[str]:
    """The directory prefixes the connection may read: the root as given, absolute, resolved.

    Each ends with a separator, so `/data/lake` does not also allow `/data/lake-private`.
    """
    if is_remote(root):
        return [root.rstrip("/") + "/"]
    found: list[str] = []
    for path in (root, os.path.abspath(root), os.path.realpath(root)):
        prefix = path.rstrip(os.sep) + os.sep
        if prefix not in found:
            found.append(prefix)
    return found


def lock_down(con: Any, root: str) -> None:
    """Let `con` read files under `root` only, and lock its configuration.

    Call it once everything the lake itself needs is set up (extensions loaded, secrets and
    filesystems registered): afterwards no setting of the connection can change.
    """
    listed = ", ".join(_literal(d) for d in allowed_directories(root))
    con.execute(f"SET allowed_directories = [{listed}]")
    # Python variables of the calling frames are not tables of the lake.
    con.execute("SET python_enable_replacements = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_statement(con: Any, sql: str) -> None:
    """Raise `QueryError` unless `sql` is exactly one read-only query."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(
            f"give exactly one SQL statement per query, got {len(statements)} {HINT}")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN.sub("", sql, count=1)
        if inner != sql:
            check_statement(con, inner)
            return
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rpartition(".")[2]
        raise QueryError(f"only queries (SELECT ...) may run, not {name} statements {HINT}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
