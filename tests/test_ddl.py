"""`xray-lake ddl`: type mapping per engine and Arrow type, locations, and DuckDB views that work.

The Spark DDL is executed against a real lake in tests/test_spark.py.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner, Result

import xray_lake as xr
from xray_lake.cli.app import app
from xray_lake.demo.fashion_search import run_demo
from xray_lake.query import ddl
from xray_lake.records.schema import SCHEMAS, table_schema

HEADLINE = {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}

# Arrow type -> (spark, trino, athena, duckdb)
TYPES: list[tuple[pa.DataType, tuple[str, str, str, str]]] = [
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
    (pa.date32(), ("DATE", "date", "date", "DATE")),
    (pa.decimal128(12, 3), ("DECIMAL(12,3)", "decimal(12,3)", "decimal(12,3)", "DECIMAL(12,3)")),
    (pa.timestamp("us", tz="UTC"),
     ("TIMESTAMP", "timestamp", "timestamp", "TIMESTAMP WITH TIME ZONE")),
    (pa.timestamp("us"), ("TIMESTAMP_NTZ", "timestamp", "timestamp", "TIMESTAMP")),
    (pa.timestamp("ms"), ("TIMESTAMP_NTZ", "timestamp", "timestamp", "TIMESTAMP_MS")),
    (pa.map_(pa.string(), pa.int64()),
     ("MAP<STRING, BIGINT>", "map(varchar, bigint)", "map<string,bigint>",
      "MAP(VARCHAR, BIGINT)")),
    (pa.map_(pa.string(), pa.float64()),
     ("MAP<STRING, DOUBLE>", "map(varchar, double)", "map<string,double>",
      "MAP(VARCHAR, DOUBLE)")),
    (pa.list_(pa.float64()), ("ARRAY<DOUBLE>", "array(double)", "array<double>", "DOUBLE[]")),
    (pa.large_list(pa.string()),
     ("ARRAY<STRING>", "array(varchar)", "array<string>", "VARCHAR[]")),
    (pa.struct([("a", pa.int32()), ("date", pa.string())]),
     ("STRUCT<`a`: INT, `date`: STRING>", 'row("a" integer, "date" varchar)',
      "struct<`a`:int,`date`:string>", 'STRUCT("a" INTEGER, "date" VARCHAR)')),
    (pa.list_(pa.map_(pa.string(), pa.list_(pa.int32()))),
     ("ARRAY<MAP<STRING, ARRAY<INT>>>", "array(map(varchar, array(integer)))",
      "array<map<string,array<int>>>", "MAP(VARCHAR, INTEGER[])[]")),
    (pa.dictionary(pa.int32(), pa.string()), ("STRING", "varchar", "string", "VARCHAR")),
]


@pytest.mark.parametrize(("dtype", "names"), TYPES, ids=[str(t) for t, _ in TYPES])
@pytest.mark.parametrize("engine", ddl.ENGINES)
def test_arrow_type_maps_to_the_engines_type(dtype: pa.DataType, names: tuple[str, ...],
                                             engine: ddl.Engine) -> None:
    assert ddl.column_type(dtype, engine) == names[ddl.ENGINES.index(engine)]


@pytest.mark.parametrize("engine", ddl.ENGINES)
def test_every_column_of_the_lake_has_a_type_in_every_engine(engine: ddl.Engine) -> None:
    for table in SCHEMAS:
        cols = ddl.columns(table, engine)
        assert [name.strip('`"') for name, _ in cols] == table_schema(table).names
        assert cols[-2:] == [(ddl.quote("label", engine), ddl.column_type(pa.string(), engine)),
                             (ddl.quote("date", engine), ddl.column_type(pa.string(), engine))]


@pytest.mark.parametrize("dtype", [pa.uint64(), pa.null(), pa.float16(), pa.time64("us")])
@pytest.mark.parametrize("engine", ddl.ENGINES)
def test_a_type_the_lake_never_writes_is_refused_by_name(dtype: pa.DataType,
                                                         engine: ddl.Engine) -> None:
    with pytest.raises(ValueError, match=re.escape(f"no {engine} type for the Arrow type {dtype}:")):
        ddl.column_type(dtype, engine)


def test_spark_refuses_nanosecond_timestamps_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="Spark cannot read nanosecond"):
        ddl.column_type(pa.timestamp("ns", tz="UTC"), "spark")
    assert ddl.column_type(pa.timestamp("ns"), "duckdb") == "TIMESTAMP_NS"


def test_identifiers_and_literals_are_quoted_per_engine() -> None:
    assert ddl.quote("date", "spark") == "`date`"
    assert ddl.quote("a`b", "athena") == "`a``b`"
    assert ddl.quote('a"b', "trino") == '"a""b"'
    assert ddl.literal("it's", "duckdb") == "'it''s'"
    assert ddl.literal("it's\\", "spark") == "'it\\'s\\\\'"


@pytest.mark.parametrize(("root", "engine", "expected"), [
    ("/srv/lake/", "spark", "file:///srv/lake/stages"),
    ("/srv/lake", "duckdb", "/srv/lake/stages"),
    ("s3://bucket/lake/", "spark", "s3a://bucket/lake/stages"),
    ("s3://bucket/lake", "duckdb", "s3://bucket/lake/stages"),
    ("s3://bucket/lake", "trino", "s3://bucket/lake/stages"),
    ("s3://bucket/lake", "athena", "s3://bucket/lake/stages/"),
    ("gs://bucket/lake", "trino", "gs://bucket/lake/stages"),
])
def test_location_per_engine(root: str, engine: ddl.Engine, expected: str) -> None:
    assert ddl.location(root, "stages", engine) == expected


def test_relative_local_roots_become_absolute(tmp_path: pytest.TempPathFactory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(str(tmp_path))
    assert ddl.location("lake", "runs", "duckdb") == f"{tmp_path}/lake/runs"
    assert ddl.location("lake", "runs", "spark") == f"file://{tmp_path}/lake/runs"


@pytest.mark.parametrize(("root", "engine", "message"), [
    ("/srv/lake", "trino", "Trino reads the lake from object storage"),
    ("/srv/lake", "athena", "Athena reads the lake from object storage"),
    ("gs://bucket/lake", "athena", "Athena reads tables from S3 only"),
    ("s3://", "spark", "names no bucket"),
])
def test_impossible_locations_are_refused(root: str, engine: ddl.Engine, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ddl.location(root, "runs", engine)


def test_trino_ddl_shape() -> None:
    text = ddl.script("trino", "s3://bucket/lake")
    assert 'CREATE SCHEMA IF NOT EXISTS "xray";' in text
    assert 'CREATE TABLE IF NOT EXISTS "xray"."stages" (\n  "run_id" varchar,\n' in text
    assert '  "reason_counts" map(varchar, bigint),\n' in text
    assert '  "started_at" timestamp,\n' in text
    assert ('  "label" varchar,\n  "date" varchar\n)\nWITH (\n'
            "  external_location = 's3://bucket/lake/stages',\n  format = 'PARQUET',\n"
            "  partitioned_by = ARRAY['label', 'date']\n);") in text
    assert ("CALL system.sync_partition_metadata(schema_name => 'xray', "
            "table_name => 'candidates', mode => 'ADD');") in text
    assert text.count("CREATE TABLE") == 3


def test_athena_ddl_shape() -> None:
    text = ddl.script("athena", "s3://bucket/lake/", "analytics")
    assert "CREATE DATABASE IF NOT EXISTS `analytics`;" in text
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `analytics`.`runs` (\n  `run_id` string,\n" in text
    assert "  `reason_counts` map<string,bigint>,\n" in text
    assert ("  `n_candidates_shed` bigint\n)\nPARTITIONED BY (`label` string, `date` string)\nSTORED AS PARQUET\n"
            "LOCATION 's3://bucket/lake/runs/';") in text
    assert "MSCK REPAIR TABLE `analytics`.`stages`;" in text
    assert "`label` string,\n" not in text  # partition columns only in PARTITIONED BY


def test_spark_ddl_shape() -> None:
    text = ddl.script("spark", "/srv/lake")
    assert ("  `label` STRING,\n  `date` STRING\n)\nUSING PARQUET\nPARTITIONED BY (`label`, `date`)\n"
            "LOCATION 'file:///srv/lake/candidates';") in text
    assert "MSCK REPAIR TABLE `runs`;" in text and "RECOVER PARTITIONS" in text
    assert "CREATE DATABASE" not in text


def test_a_bad_schema_name_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a schema name"):
        ddl.script("spark", "/srv/lake", "my-db")
    with pytest.raises(ValueError, match="Trino needs a schema"):
        ddl.script("trino", "s3://b/lake", "")


# --- DuckDB: the printed views are executed and give the lake's answers --------------------

def statements(text: str) -> list[str]:
    """The `;`-terminated statements of a DDL script, without its comment lines."""
    code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["ddl", *args])


@pytest.fixture
def demo_root(isolated_lake: str) -> str:
    summary = run_demo(runs=12, root=isolated_lake, seed=7)
    assert summary.flushed
    return isolated_lake


@pytest.fixture
def views(demo_root: str) -> duckdb.DuckDBPyConnection:
    """A plain DuckDB connection holding the views `xray-lake ddl --engine duckdb` printed."""
    result = cli("--engine", "duckdb", "--root", demo_root)
    assert result.exit_code == 0, result.stderr
    con = duckdb.connect()
    for statement in statements(result.stdout):
        con.execute(statement)
    return con


def test_duckdb_views_answer_the_headline_question_like_the_lake(
        views: duckdb.DuckDBPyConnection, demo_root: str) -> None:
    expected = xr.Lake(demo_root).find(HEADLINE)
    assert expected.height > 0
    got = views.execute(
        "select s.run_id, s.stage_id, r.label, r.date, s.fail_ratio from stages s "
        "left join runs r on r.run_id = s.run_id and r.label = s.label and r.date = s.date "
        "where s.type = 'filtering' and s.fail_ratio > 0.9").fetchall()
    assert sorted(got) == sorted(expected.select(
        "run_id", "stage_id", "label", "date", "fail_ratio").iter_rows())


def test_duckdb_views_have_the_lakes_columns_types_and_rows(
        views: duckdb.DuckDBPyConnection, demo_root: str) -> None:
    lake = xr.Lake(demo_root)
    for table in SCHEMAS:
        ours = views.execute(f"select column_name, column_type from (describe {table})").fetchall()
        theirs = lake.connection.execute(
            f"select column_name, column_type from (describe {table})").fetchall()
        assert dict(ours) == dict(theirs), table  # xr.Lake puts `date` before `label`
        count = f"select count(*) from {table}"
        assert views.execute(count).fetchall() == lake.connection.execute(count).fetchall()


def test_duckdb_views_prune_label_and_date_folders(views: duckdb.DuckDBPyConnection) -> None:
    plan = str(views.execute("explain select count(*) from candidates "
                             "where label = 'similar_items'").fetchall())
    match = re.search(r"Scanning Files: (\d+)/(\d+)", plan)
    assert match is not None, plan
    scanned, total = map(int, match.groups())
    assert scanned < total


# --- the command -------------------------------------------------------------------------

def test_ddl_prints_to_stdout_and_reads_the_root_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAY_LAKE_ROOT", "s3://bucket/from-env")
    result = cli("--engine", "ATHENA")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ddl.script("athena", "s3://bucket/from-env")
    assert result.stderr == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "trino", "--root", "/srv/lake"], "Invalid value for '--root': Trino reads"),
    (["--engine", "athena", "--root", "gs://b/x"], "Invalid value for '--root': Athena reads"),
    (["--engine", "spark", "--schema", "1x"], "Invalid value for '--schema'"),
    (["--engine", "trino", "--root", "s3://b/x", "--schema", ""],
     "Invalid value for '--schema': Trino needs a schema"),
    (["--engine", "oracle"], "Invalid value for '--engine'"),
    (["--root", "/srv/lake"], "Missing option '--engine'"),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_a_missing_local_lake_is_a_warning(tmp_path: pytest.TempPathFactory) -> None:
    result = cli("--engine", "duckdb", "--root", f"{tmp_path}/nowhere")
    assert result.exit_code == 0
    assert "CREATE OR REPLACE VIEW" in result.stdout
    assert "warning: no lake at" in result.stderr
