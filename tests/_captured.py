"""SQL over what `capture_records()` kept: `lake().sql(...)` for tests that need no files.

Tests of what the SDK records (ids, counts, positions, statuses) read the same rows whether
the writer wrote Parquet files or kept them in memory; these skip the files. The lake's
tables are the same Arrow tables, queried by DuckDB in UTC as `xr.Lake.sql` queries them.
"""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow as pa

from xray_lake.records.schema import table_schema
from xray_lake.storage.layout import TABLES
from xray_lake.testing import CapturedRecords


class Captured:
    """The rows recorded so far, answering `sql()` like `xr.Lake`."""

    def __init__(self, records: CapturedRecords) -> None:
        self._records = records

    def sql(self, query: str) -> pl.DataFrame:
        self._records.runs  # noqa: B018 - reading a table flushes the writer first
        connection = duckdb.connect()
        connection.execute("SET TimeZone = 'UTC'")
        for name in TABLES:
            table = self._records._sink.table(name)
            connection.register(name, table if table is not None
                                else pa.Table.from_batches([], table_schema(name)))
        result = pl.from_arrow(connection.sql(query).to_arrow_table())
        assert isinstance(result, pl.DataFrame)
        return result
