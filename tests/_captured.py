"""SQL over what `capture_records()` kept: `lake().sql(...)` for tests that need no files.

Tests of what the SDK records (ids, counts, positions, statuses) read the same rows whether
the writer wrote Parquet files or kept them in memory; these skip the files and the cost of
opening a lake (a DuckDB connection each: about a tenth of a second). The tables are the same
Arrow tables, queried by DuckDB in UTC as `xr.Lake.sql` queries them, on one connection kept
for the whole test run.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import duckdb
import polars as pl
import pyarrow as pa

import xray_lake as xr
from xray_lake.records.schema import table_schema
from xray_lake.storage.layout import TABLES
from xray_lake.testing import CapturedRecords


class Tables(Protocol):
    """What the tests read recorded rows through: `xr.Lake` or `Captured`."""

    def sql(self, sql: str, params: Any = None, /) -> pl.DataFrame: ...


@functools.cache
def _connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    return connection


class Captured:
    """The rows recorded so far, answering `sql()` like `xr.Lake`."""

    def __init__(self, records: CapturedRecords) -> None:
        self._records = records

    def sql(self, sql: str, params: Any = None, /) -> pl.DataFrame:
        assert xr.flush(5), f"flush failed: {xr.stats()}"
        connection = _connection()
        for name in TABLES:
            table = self._records._sink.table(name)
            connection.register(name, table if table is not None
                                else pa.Table.from_batches([], table_schema(name)))
        try:
            result = pl.from_arrow(connection.sql(sql, params=params).to_arrow_table())
        finally:
            for name in TABLES:
                connection.unregister(name)
        assert isinstance(result, pl.DataFrame)
        return result
