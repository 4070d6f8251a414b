"""The SQL box: one read-only query (`Lake.sql`), its first rows, and a time limit."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from xray_lake.errors import QueryError
from xray_lake.query.lake import Lake
from xray_lake.query.readonly import HINT

if TYPE_CHECKING:
    import polars as pl

SQL_ROW_LIMIT: Final = 500
SQL_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class SqlResult:
    """The first rows of a read-only query's answer."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def run_sql(lake: Lake, sql: str, limit: int = SQL_ROW_LIMIT,
            timeout_s: float = SQL_TIMEOUT_S) -> SqlResult:
    """Run one read-only query (`Lake.sql`: the lake's files only, nothing written).

    A plain query is wrapped in `select * from (...) limit N+1`, so DuckDB stops early; what
    cannot be wrapped (DESCRIBE, SHOW, EXPLAIN ...) runs as typed. A query still running
    after `timeout_s` is interrupted.
    """
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryError("type a query, e.g. select label, count(*) from runs group by 1")
    try:
        frame = _timed(lake, f"select * from (\n{text}\n) as answer limit {limit + 1}",
                       timeout_s)
    except QueryError as exc:
        if str(exc) == INTERRUPTED:
            raise QueryError(f"the query ran longer than {timeout_s:g} s and was stopped; "
                             "narrow it (a label, a date range) or add a LIMIT") from None
        frame = _timed(lake, text, timeout_s)  # checked again as typed: still one query
    truncated = frame.height > limit
    return SqlResult(frame.columns, frame.head(limit).rows(), truncated)


INTERRUPTED: Final = "query interrupted"


def _timed(lake: Lake, sql: str, timeout_s: float) -> pl.DataFrame:
    """`lake.sql(sql)`, interrupted after `timeout_s`; a refusal names no opt-out (the web
    view has none)."""
    timer = threading.Timer(timeout_s, lake.interrupt)
    timer.start()
    try:
        return lake.sql(sql)
    except QueryError as exc:
        text = str(exc).replace(f" {HINT}", " (the web view runs read-only queries only)")
        raise QueryError(text) from None
    finally:
        timer.cancel()
