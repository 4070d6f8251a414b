"""DuckDB views `runs`, `stages`, `candidates` over a lake root (typed empty views for an empty lake)."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from xray_lake.records.schema import SCHEMAS, table_schema
from xray_lake.storage.layout import table_glob

HIVE_TYPES = "{'label': 'VARCHAR', 'date': 'VARCHAR'}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def has_files(root: str, table: str) -> bool:
    base = os.path.join(root, table)
    if not os.path.isdir(base):
        return False
    for _dirpath, _dirs, files in os.walk(base):
        if any(f.endswith(".parquet") and not f.startswith(".") for f in files):
            return True
    return False


def source_sql(root: str, table: str) -> str:
    """The `read_parquet(...)` expression for one table; label/date stay strings."""
    return (
        f"read_parquet({_literal(table_glob(root, table))}, hive_partitioning = true, "
        f"hive_types = {HIVE_TYPES}, union_by_name = true)"
    )


def attach(con: Any, root: str) -> dict[str, bool]:
    """(Re)create the three views; returns which tables have data files."""
    present: dict[str, bool] = {}
    for table in SCHEMAS:
        present[table] = has_files(root, table)
        if present[table]:
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source_sql(root, table)}")
        else:
            empty = pa.Table.from_batches([], table_schema(table))
            con.register(f"__xray_empty_{table}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM __xray_empty_{table}")
    return present
