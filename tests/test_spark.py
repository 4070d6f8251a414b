"""Spark reads the lake with no xray-lake code and answers the headline question like DuckDB.

One local Spark session (`local[2]`, UI off, driver on 127.0.0.1) for the whole test run. The
lake holds demo runs on two dates, a run whose label looks like a number (`0017`) and one
whose label is escaped in its folder name, so a partition value read back as anything but the
original string shows. The settings and the Spark SQL below are checked to appear verbatim in
docs/querying-at-scale.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import LongType, MapType, StringType, TimestampType
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.app import app
from xray_lake.demo.fashion_search import run_demo
from xray_lake.records.schema import SCHEMAS
from xray_lake.sdk import recording

# A local Spark session: half a minute to start.
pytestmark = pytest.mark.slow

DOC = (Path(__file__).resolve().parent.parent / "docs" / "querying-at-scale.md").read_text()

# The session settings the docs recommend (the warehouse folder is the test's own).
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "2",
}

# For a short-lived session on tiny data (tests, CI): the JIT's first tier only and no
# whole-stage code generation start answering sooner; long jobs want the defaults.
FAST_START = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.sql.codegen.wholeStage": "false",
}

HEADLINE_SQL = """\
SELECT s.run_id, s.stage_id, r.label, r.date, s.fail_ratio, r.started_at AS run_started_at
FROM stages AS s
LEFT JOIN runs AS r
  ON r.run_id = s.run_id AND r.label = s.label AND r.date = s.date
WHERE s.type = 'filtering' AND s.fail_ratio > 0.9
ORDER BY s.started_at, s.run_id, s.seq"""

HEADLINE = {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}
NUMERIC_LABEL = "0017"
ESCAPED_LABEL = "shop/eu: ü 50%"  # its folder is label=shop%2Feu%3A ü 50%25
WEEK_AGO_S = 8 * 86400


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One local session for every Spark test, stopped at the end of the run."""
    builder = SparkSession.builder.master("local[2]").appName("xray-lake-tests")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    for key, value in FAST_START.items():
        builder = builder.config(key, value)
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    builder = builder.config("spark.sql.warehouse.dir", str(warehouse))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # read by the JVM launcher only
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Demo runs 8 days ago and today, plus runs labelled `0017` and `shop/eu: ü 50%` whose
    filter drops 19 of 20."""
    lake_root = str(tmp_path_factory.mktemp("spark") / "lake")
    real = time.time
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recording, "_clock", lambda: real() - WEEK_AGO_S)
        earlier = run_demo(runs=8, root=lake_root, seed=11)
    today = run_demo(runs=8, root=lake_root, seed=7)
    items = [{"id": f"p{i}", "ok": i == 0, "why": None if i == 0 else "too_far"}
             for i in range(20)]
    for label, run_id in ((NUMERIC_LABEL, "n-0017"), (ESCAPED_LABEL, "e-1")):
        with xr.run(label, run_id=run_id) as run, \
                run.stage("distance", type="filtering", passed="ok", reason_label="why") as st:
            st.input(items)
            st.output(items)
    assert earlier.flushed and today.flushed and xr.flush(10)
    return lake_root


@pytest.fixture(scope="module")
def lake(root: str) -> xr.Lake:
    return xr.Lake(root)


@pytest.fixture(scope="module")
def views(spark: SparkSession, root: str) -> SparkSession:
    """A session whose temp views runs, stages, candidates read the lake's folders directly."""
    session = spark.newSession()
    for table in SCHEMAS:
        session.read.parquet(f"{root}/{table}").createOrReplaceTempView(table)
    return session


def rows(frame: DataFrame) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in frame.collect())


def headline(session: SparkSession) -> list[tuple[Any, ...]]:
    """The headline answer in Spark SQL, with the run's start as epoch microseconds."""
    answer = session.sql(HEADLINE_SQL)
    return rows(answer.selectExpr("run_id", "stage_id", "label", "date", "fail_ratio",
                                  "unix_micros(run_started_at)"))


def duckdb_headline(lake: xr.Lake) -> list[tuple[Any, ...]]:
    found = lake.find(HEADLINE, columns="all")
    return sorted(found.select("run_id", "stage_id", "label", "date", "fail_ratio",
                               found["run_started_at"].dt.epoch("us")).iter_rows())


def test_the_documented_session_and_query_are_the_tested_ones() -> None:
    for key, value in SPARK_CONF.items():
        assert f'.config("{key}", "{value}")' in DOC, key
    assert '.master("local[2]")' in DOC
    assert HEADLINE_SQL in DOC


def test_spark_reads_every_table_with_duckdbs_row_counts(views: SparkSession,
                                                        lake: xr.Lake) -> None:
    for table in SCHEMAS:
        expected = lake.sql(f"select count(*) as n from {table}")["n"][0]
        assert expected > 0
        assert views.table(table).count() == expected, table


def test_spark_reads_partition_columns_as_strings(views: SparkSession, lake: xr.Lake) -> None:
    for table in SCHEMAS:
        fields = {f.name: f.dataType for f in views.table(table).schema.fields}
        assert fields["label"] == StringType() and fields["date"] == StringType()
    spark_pairs = rows(views.sql("select distinct label, date from runs"))
    duck_pairs = sorted(lake.sql("select distinct label, date from runs").iter_rows())
    assert spark_pairs == duck_pairs
    assert {NUMERIC_LABEL, ESCAPED_LABEL} <= {label for label, _ in spark_pairs}
    assert len({date for _, date in spark_pairs}) == 2


def test_spark_reads_timestamps_as_the_same_utc_instants(views: SparkSession,
                                                         lake: xr.Lake) -> None:
    stages = views.table("stages")
    assert stages.schema["started_at"].dataType == TimestampType()
    spark_times = rows(stages.selectExpr("stage_id", "unix_micros(started_at)",
                                         "unix_micros(finished_at)"))
    duck_times = sorted(lake.sql("select stage_id, epoch_us(started_at), epoch_us(finished_at) "
                                 "from stages").iter_rows())
    assert spark_times == duck_times
    # the date partition is the run's UTC start date, and Spark's UTC session agrees
    mismatched = views.sql("select count(*) from runs "
                           "where date_format(started_at, 'yyyy-MM-dd') != date").first()
    assert mismatched is not None and mismatched[0] == 0


def test_spark_reads_reason_counts_as_a_map(views: SparkSession, lake: xr.Lake) -> None:
    stages = views.table("stages")
    assert stages.schema["reason_counts"].dataType == MapType(StringType(), LongType(), True)
    spark_counts = {row["stage_id"]: row["reason_counts"] for row in
                    stages.where("type = 'filtering'").select("stage_id", "reason_counts")
                    .collect()}
    arrow = lake.sql_arrow("select stage_id, reason_counts from stages "
                           "where type = 'filtering'").to_pylist()
    duck_counts = {row["stage_id"]: dict(row["reason_counts"]) for row in arrow}
    assert spark_counts == duck_counts
    assert any(counts.get("too_far") == 19 for counts in spark_counts.values())


def test_headline_question_in_spark_sql_matches_duckdb(views: SparkSession,
                                                       lake: xr.Lake) -> None:
    answer = headline(views)
    assert answer == duckdb_headline(lake)
    labels = {row[2] for row in answer}
    assert {"fashion_search", NUMERIC_LABEL, ESCAPED_LABEL} <= labels, answer
    assert all(row[4] > 0.9 for row in answer)


def test_tables_created_from_the_spark_ddl_answer_like_duckdb(spark: SparkSession, root: str,
                                                              views: SparkSession,
                                                              lake: xr.Lake) -> None:
    result = CliRunner().invoke(app, ["ddl", "--engine", "spark", "--root", root,
                                      "--schema", "xray_ddl"])
    assert result.exit_code == 0, result.stderr
    code = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("--"))
    session = spark.newSession()
    executed = [s.strip() for s in code.split(";") if s.strip()]
    for statement in executed:
        session.sql(statement)
    assert sum(s.startswith("MSCK REPAIR TABLE") for s in executed) == 3
    session.catalog.setCurrentDatabase("xray_ddl")
    for table in SCHEMAS:
        declared = session.table(f"xray_ddl.{table}")
        # the declared types are exactly what Spark infers from the files
        assert declared.dtypes == views.table(table).dtypes, table
        assert declared.count() == lake.sql(f"select count(*) as n from {table}")["n"][0], table
    assert headline(session) == duckdb_headline(lake)
