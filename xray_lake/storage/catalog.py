"""DuckDB views `runs`, `stages`, `candidates` over a lake root (typed empty views for an empty lake)."""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Any

import duckdb
import pyarrow as pa

from xray_lake.errors import LakeReadError
from xray_lake.records.schema import SCHEMAS, table_schema
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
    present: dict[str, bool] = {}
    for table in SCHEMAS:
        versions = schema_versions(root, table)
        present[table] = bool(versions)
        if versions:
            sql = f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source_sql(root, table, versions)}"
            try:
                con.execute(sql)
            except duckdb.Error as exc:
                raise LakeReadError(
                    f"cannot open table {table!r} of the lake at {root}: "
                    f"{str(exc).strip().splitlines()[0]}. Run `xray-lake doctor --fix` to move "
                    "unreadable files to _quarantine/."
                ) from None
        else:
            empty = pa.Table.from_batches([], table_schema(table))
            con.register(f"__xray_empty_{table}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM __xray_empty_{table}")
    return present
