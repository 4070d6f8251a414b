"""Table definitions of the lake for Spark, Trino, Athena and DuckDB, derived from the Arrow schemas.

Engines outside xray-lake need the three tables declared once (Spark, Trino, Athena) or want
views (DuckDB). The column lists come from `records.schema` (never written by hand), so a new
column reaches every engine's DDL by itself. The partition columns `label` and `date` are
always strings: without a declared type, engines infer `0017` as a number and `date` as a date.

Everything here is pure text generation: nothing is connected to, nothing is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, get_args

import pyarrow as pa

from xray_lake.records.schema import PARTITION_COLUMNS, SCHEMA_VERSION, table_schema
from xray_lake.storage.layout import TABLES

Engine = Literal["spark", "trino", "athena", "duckdb"]
ENGINES: tuple[Engine, ...] = get_args(Engine)

# Trino and Athena keep external tables in a schema (database) named in their DDL; Spark and
# DuckDB create them in the current one unless told otherwise.
DEFAULT_SCHEMAS: dict[Engine, str | None] = {
    "spark": None, "trino": "xray", "athena": "xray", "duckdb": None,
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")

# Scalar Arrow types -> each engine's name, in the order (spark, trino, athena, duckdb).
_SCALARS: tuple[tuple[pa.DataType, tuple[str, str, str, str]], ...] = (
    (pa.string(), ("STRING", "varchar", "string", "VARCHAR")),
    (pa.large_string(), ("STRING", "varchar", "string", "VARCHAR")),
    (pa.bool_(), ("BOOLEAN", "boolean", "boolean", "BOOLEAN")),
    (pa.int8(), ("TINYINT", "tinyint", "tinyint", "TINYINT")),
    (pa.int16(), ("SMALLINT", "smallint", "smallint", "SMALLINT")),
    (pa.int32(), ("INT", "integer", "int", "INTEGER")),
    (pa.int64(), ("BIGINT", "bigint", "bigint", "BIGINT")),
    (pa.float32(), ("FLOAT", "real", "float", "FLOAT")),
    (pa.float64(), ("DOUBLE", "double", "double", "DOUBLE")),
    (pa.binary(), ("BINARY", "varbinary", "binary", "BLOB")),
    (pa.large_binary(), ("BINARY", "varbinary", "binary", "BLOB")),
    (pa.date32(), ("DATE", "date", "date", "DATE")),
)
_DUCKDB_NAIVE_TIMESTAMPS = {"s": "TIMESTAMP_S", "ms": "TIMESTAMP_MS", "us": "TIMESTAMP",
                            "ns": "TIMESTAMP_NS"}


def check_engine(name: str) -> Engine:
    """`name` as an engine, or a ValueError listing the engines."""
    for engine in ENGINES:
        if name == engine:
            return engine
    raise ValueError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")


def check_schema_name(name: str) -> str:
    """A schema (database) name that every engine accepts unquoted, or a ValueError saying why."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a schema name: use letters, digits and _ "
                         "(not starting with a digit), e.g. xray")
    return name.lower()


def quote(name: str, engine: Engine) -> str:
    """An identifier quoted for `engine` (`date` and `type` are keywords in some of them)."""
    if engine in ("spark", "athena"):
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def literal(text: str, engine: Engine) -> str:
    """A string literal for `engine`: Spark and Hive (Athena DDL) treat backslash as an escape."""
    if engine in ("spark", "athena"):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + text.replace("'", "''") + "'"


def column_type(dtype: pa.DataType, engine: Engine) -> str:
    """The type `engine` declares for a Parquet column written from Arrow type `dtype`.

    Raises ValueError for a type the engine cannot read from Parquet (or that the lake never
    writes), naming both.
    """
    column = ENGINES.index(engine)
    for scalar, names in _SCALARS:
        if dtype == scalar:
            return names[column]
    if pa.types.is_timestamp(dtype):
        return _timestamp_type(dtype, engine)
    if pa.types.is_decimal(dtype) and dtype.precision <= 38:
        name = "DECIMAL" if engine in ("spark", "duckdb") else "decimal"
        return f"{name}({dtype.precision},{dtype.scale})"
    if pa.types.is_dictionary(dtype):  # a Parquet encoding, not a type: readers see the values
        return column_type(dtype.value_type, engine)
    if pa.types.is_map(dtype):
        key, value = column_type(dtype.key_type, engine), column_type(dtype.item_type, engine)
        return {"spark": f"MAP<{key}, {value}>", "trino": f"map({key}, {value})",
                "athena": f"map<{key},{value}>", "duckdb": f"MAP({key}, {value})"}[engine]
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        item = column_type(dtype.value_type, engine)
        return {"spark": f"ARRAY<{item}>", "trino": f"array({item})",
                "athena": f"array<{item}>", "duckdb": f"{item}[]"}[engine]
    if pa.types.is_struct(dtype):
        fields = [(quote(f.name, engine), column_type(f.type, engine)) for f in dtype]
        if engine == "spark":
            return "STRUCT<" + ", ".join(f"{n}: {t}" for n, t in fields) + ">"
        if engine == "athena":
            return "struct<" + ",".join(f"{n}:{t}" for n, t in fields) + ">"
        inner = ", ".join(f"{n} {t}" for n, t in fields)
        return f"row({inner})" if engine == "trino" else f"STRUCT({inner})"
    raise ValueError(f"no {engine} type for the Arrow type {dtype}: the lake never writes it; "
                     "map it in xray_lake/query/ddl.py before adding such a column")


def _timestamp_type(dtype: pa.TimestampType, engine: Engine) -> str:
    if engine == "spark":
        if dtype.unit == "ns":  # Spark fails on INT64 TIMESTAMP(NANOS) columns
            raise ValueError("Spark cannot read nanosecond Parquet timestamps: write the "
                             "column as timestamp('us') instead")
        return "TIMESTAMP" if dtype.tz is not None else "TIMESTAMP_NTZ"
    if engine in ("trino", "athena"):
        # Hive tables take no precision and no time zone: the catalog's timestamp precision
        # decides (Trino: hive.timestamp-precision); Parquet UTC instants read as UTC.
        return "timestamp"
    if dtype.tz is not None:
        return "TIMESTAMP WITH TIME ZONE"
    return _DUCKDB_NAIVE_TIMESTAMPS[dtype.unit]


def columns(table: str, engine: Engine) -> list[tuple[str, str]]:
    """(quoted name, type) of every column a reader sees, partition columns last."""
    return [(quote(f.name, engine), column_type(f.type, engine)) for f in table_schema(table)]


def root_location(root: str, engine: Engine) -> str:
    """The lake root as `engine` names it (no trailing slash).

    Local roots become absolute (`file://` for Spark); Trino and Athena read object storage
    only. Spark gets `s3a://` for `s3://` (the Hadoop S3 connector's scheme).
    """
    url = _URL.match(root)
    if url is not None:
        scheme, rest = url.group(1).lower(), url.group(2).rstrip("/")
        if not rest.strip("/"):
            raise ValueError(f"{root!r} names no bucket: use s3://bucket/prefix")
        if engine == "athena" and scheme != "s3":
            raise ValueError(f"Athena reads tables from S3 only, not {root!r}: pass --root "
                             "s3://bucket/prefix")
        if engine == "spark" and scheme == "s3":
            scheme = "s3a"
        return f"{scheme}://{rest}"
    if engine in ("trino", "athena"):
        raise ValueError(f"{engine.capitalize()} reads the lake from object storage, not the "
                         f"local folder {root!r}: pass --root s3://bucket/prefix (where the "
                         "lake is uploaded or written)")
    path = Path(os.path.abspath(root)).as_posix()
    return f"file://{path}" if engine == "spark" else path


def location(root: str, table: str, engine: Engine) -> str:
    """Where `engine` finds `table` of the lake at `root` (Athena wants a trailing slash)."""
    url = f"{root_location(root, engine)}/{table}"
    return url + "/" if engine == "athena" else url


def _name(table: str, schema: str | None, engine: Engine) -> str:
    name = quote(table, engine)
    return f"{quote(schema, engine)}.{name}" if schema else name


def _column_lines(table: str, engine: Engine, *, partitions: bool) -> str:
    cols = columns(table, engine)
    if not partitions:
        partition_names = {quote(p, engine) for p in PARTITION_COLUMNS}
        cols = [(n, t) for n, t in cols if n not in partition_names]
    return ",\n".join(f"  {n} {t}" for n, t in cols)


def table_statements(table: str, engine: Engine, root: str, schema: str | None = None) -> list[str]:
    """The statements that declare `table` (and load its partitions) for `engine`, without `;`."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: use one of {', '.join(TABLES)}")
    name = _name(table, schema, engine)
    where = location(root, table, engine)
    parts = ", ".join(quote(p, engine) for p in PARTITION_COLUMNS)
    if engine == "spark":
        return [
            f"CREATE TABLE IF NOT EXISTS {name} (\n{_column_lines(table, engine, partitions=True)}\n)"
            f"\nUSING PARQUET\nPARTITIONED BY ({parts})\nLOCATION {literal(where, engine)}",
            f"-- new label/date folders stay invisible until partitions are recovered: run this "
            f"after each new day\n-- (same as ALTER TABLE {name} RECOVER PARTITIONS)\n"
            f"MSCK REPAIR TABLE {name}",
        ]
    if engine == "athena":
        typed_parts = ", ".join(f"{quote(p, engine)} string" for p in PARTITION_COLUMNS)
        return [
            f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n"
            f"{_column_lines(table, engine, partitions=False)}\n)\n"
            f"PARTITIONED BY ({typed_parts})\nSTORED AS PARQUET\n"
            f"LOCATION {literal(where, engine)}",
            "-- load new label/date folders (or use partition projection: see "
            f"docs/querying-at-scale.md)\nMSCK REPAIR TABLE {name}",
        ]
    if engine == "trino":
        array = ", ".join(literal(p, engine) for p in PARTITION_COLUMNS)
        schema_name = literal(schema or "", engine)
        return [
            f"CREATE TABLE IF NOT EXISTS {name} (\n"
            f"{_column_lines(table, engine, partitions=True)}\n)\nWITH (\n"
            f"  external_location = {literal(where, engine)},\n  format = 'PARQUET',\n"
            f"  partitioned_by = ARRAY[{array}]\n)",
            "-- load new label/date folders (run again after each new day)\n"
            f"CALL system.sync_partition_metadata(schema_name => {schema_name}, "
            f"table_name => {literal(table, engine)}, mode => 'ADD')",
        ]
    select = ",\n".join(f"  CAST({n} AS {t}) AS {n}" for n, t in columns(table, engine))
    glob = literal(f"{where}/*/*/*.parquet", engine)
    return [
        f"CREATE OR REPLACE VIEW {name} AS\nSELECT\n{select}\n"
        f"FROM read_parquet({glob}, hive_partitioning = true,\n"
        "  hive_types = {'label': VARCHAR, 'date': VARCHAR}, union_by_name = true)"
    ]


def script(engine: Engine, root: str, schema: str | None = None) -> str:
    """The whole DDL script for `engine`: schema, then each table's statements, `;`-terminated.

    `schema=None` uses the engine's default (`DEFAULT_SCHEMAS`); pass "" for none (Spark and
    DuckDB only: Trino's partition sync needs a schema name).
    """
    schema = DEFAULT_SCHEMAS[engine] if schema is None else schema
    if schema:
        schema = check_schema_name(schema)
    elif engine == "trino":
        raise ValueError("Trino needs a schema to hold the tables: pass --schema NAME")
    shown = root_location(root, engine)
    lines = [f"-- xray-lake tables (schema version {SCHEMA_VERSION}) for {engine}, lake at "
             f"{shown}", "-- label and date are partition columns, read as strings", ""]
    statements: list[str] = []
    if schema:
        keyword = "DATABASE" if engine in ("spark", "athena") else "SCHEMA"
        statements.append(f"CREATE {keyword} IF NOT EXISTS {quote(schema, engine)}")
    for table in TABLES:
        statements.extend(table_statements(table, engine, root, schema))
    return "\n".join(lines) + "\n\n".join(f"{s};" for s in statements) + "\n"


__all__ = ["DEFAULT_SCHEMAS", "ENGINES", "Engine", "check_engine", "check_schema_name",
           "column_type", "columns", "literal", "location", "quote", "root_location", "script",
           "table_statements"]
