"""The lake is plain Parquet: readable without xray_lake, labels stay strings, empty lakes work."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

import xray_lake as xr

LABELS = ["42", "0017", "a/../b c/ü%", "competitor_discovery"]


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    xr.configure(root=str(root), strict=True, fsync=False)
    for label in LABELS:
        with xr.run(label, run_id=f"run-{label}") as run:
            with run.stage("search", type="retrieval") as st:
                st.output([{"id": i, "price": i * 1.5} for i in range(4)])
            with run.stage("filter", type="filtering", passed="ok", reason_label="why") as st:
                items = [{"id": i, "ok": i < 1, "why": None if i < 1 else "price_too_high"}
                         for i in range(4)]
                st.input(items)
                st.output(items)
    assert xr.flush(10)
    return root


@pytest.mark.parametrize("table", ["runs", "stages", "candidates"])
def test_plain_duckdb_reads_every_table_with_string_labels(lake_root: Path, table: str) -> None:
    con = duckdb.connect()
    rows = con.sql(
        f"select label, date, typeof(label) as t from read_parquet('{lake_root}/{table}/*/*/*.parquet',"
        " hive_partitioning = true, hive_types = {'label': 'VARCHAR', 'date': 'VARCHAR'})"
    ).fetchall()
    assert {r[0] for r in rows} == set(LABELS)
    assert {r[2] for r in rows} == {"VARCHAR"}
    assert all(len(r[1]) == 10 and r[1][4] == "-" for r in rows)


@pytest.mark.parametrize("table", ["runs", "stages", "candidates"])
def test_plain_polars_reads_every_table_with_string_labels(lake_root: Path, table: str) -> None:
    frame = pl.scan_parquet(
        str(lake_root / table / "*" / "*" / "*.parquet"), hive_partitioning=True,
        hive_schema={"label": pl.String, "date": pl.String},
    ).collect()
    assert frame.schema["label"] == pl.String
    assert set(frame["label"]) == set(LABELS)


def test_lake_views_answer_the_headline_question(lake_root: Path) -> None:
    lake = xr.Lake(str(lake_root))
    found = lake.sql(
        "select label, fail_ratio from stages where type = 'filtering' and fail_ratio > 0.7 "
        "order by label"
    )
    assert found["label"].to_list() == sorted(LABELS)
    assert found["fail_ratio"].to_list() == [0.75] * 4
    counts = lake.sql("select reason_counts from stages where type = 'filtering' limit 1")
    assert counts["reason_counts"].to_list()[0] == {"price_too_high": 3}


def test_labels_filter_by_exact_string(lake_root: Path) -> None:
    lake = xr.Lake(str(lake_root))
    assert lake.sql("select count(*) as n from runs where label = ?", ["0017"])["n"][0] == 1
    assert lake.sql("select count(*) as n from runs where label = ?", ["17"])["n"][0] == 0


def test_empty_lake_gives_typed_empty_views(tmp_path: Path) -> None:
    lake = xr.Lake(str(tmp_path / "nothing-here"))
    for table in ("runs", "stages", "candidates"):
        frame = lake.sql(f"select * from {table}")
        assert frame.height == 0
        assert "label" in frame.columns and "run_id" in frame.columns
    assert lake.sql("select avg(fail_ratio) as a from stages")["a"][0] is None


def test_views_see_files_published_after_the_lake_was_opened(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    xr.configure(root=str(root), fsync=False)
    lake = xr.Lake(str(root))
    assert lake.sql("select count(*) as n from runs")["n"][0] == 0
    with xr.run("late"):
        pass
    assert xr.flush(10)
    assert lake.sql("select count(*) as n from runs")["n"][0] == 1


def test_bad_sql_raises_query_error_with_the_reason(tmp_path: Path) -> None:
    lake = xr.Lake(str(tmp_path))
    with pytest.raises(xr.QueryError, match="no_such_column"):
        lake.sql("select no_such_column from stages")
