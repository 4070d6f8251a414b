"""The in-memory copies of `runs` / `stages` in a long-lived `Lake` are never stale.

Every test first warms the cache (`LOAD_AFTER` queries), checks a copy is really in use, then
changes the lake (a flush, a compaction, a deleted file) and expects the very next query to
see it exactly as a fresh `Lake` with no cache does.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import shutil
from collections.abc import Callable

import pytest

import xray_lake as xr
from xray_lake.query import stage
from xray_lake.query.cache import LOAD_AFTER

HEADLINE = ("select run_id, name, label, fail_ratio from stages "
            "where type = 'filtering' and fail_ratio > 0.5 order by run_id")


def record(run_id: str, label: str = "shop", fail: int = 3) -> None:
    """One run: a retrieval stage, then a filtering stage failing `fail` of 4 candidates."""
    with xr.run(label, run_id=run_id) as run:
        with run.stage("search", type="retrieval") as st:
            st.output([{"id": i} for i in range(4)])
        with run.stage("filter", type="filtering", passed="ok") as st:
            items = [{"id": i, "ok": i >= fail} for i in range(4)]
            st.input(items)
            st.output(items)


def fresh(root: str, sql: str = HEADLINE) -> list[tuple[object, ...]]:
    """The answer of a `Lake` with no cache: what a cached one must return."""
    with xr.Lake(root, cache_bytes=0) as lake:
        return lake.sql(sql).rows()


def warm(lake: xr.Lake, sql: str = HEADLINE) -> None:
    for _ in range(LOAD_AFTER):
        lake.sql(sql)
    assert lake._cache is not None and "stages" in lake._cache.copies, "cache not in use"


def test_the_cache_is_used_and_answers_like_the_files(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    for i in range(3):
        record(f"r{i}")
    with lake() as opened:
        warm(opened)
        assert opened.sql(HEADLINE).rows() == fresh(isolated_lake)
        view = opened.connection.execute(
            "select sql from duckdb_views() where view_name = 'stages'").fetchall()[0][0]
        assert "xray_cache" in view  # the view reads the copy, not the files
        found = opened.query().where(stage.type == "filtering", stage.fail_ratio > 0.5).select(
            stage.run_id, stage.fail_ratio).to_polars()
        assert sorted(found.rows()) == [(f"r{i}", 0.75) for i in range(3)]


def test_a_new_flush_is_seen_by_the_next_query(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    record("r0")
    with lake() as opened:
        warm(opened)
        assert len(opened.sql(HEADLINE)) == 1
        record("r1")
        record("r2", label="other")  # a new label folder too
        assert xr.flush(5)
        assert opened.sql(HEADLINE).rows() == fresh(isolated_lake)
        assert len(opened.sql(HEADLINE)) == 3
        assert "stages" in opened._cache.copies  # kept up to date, not dropped  # type: ignore[union-attr]


def test_a_compaction_is_seen_by_the_next_query(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    for i in range(4):
        record(f"r{i}")
        assert xr.flush(5)  # one file per flush: something to merge
    before = sorted(glob.glob(f"{isolated_lake}/stages/*/*/*.parquet"))
    assert len(before) >= 4
    with lake() as opened:
        warm(opened)
        expected = fresh(isolated_lake)
        tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date()
        xr.compact(isolated_lake, before=tomorrow)
        after = sorted(glob.glob(f"{isolated_lake}/stages/*/*/*.parquet"))
        assert len(after) < len(before)
        assert opened.sql(HEADLINE).rows() == expected  # no row lost, none counted twice
        assert opened.sql("select count(*) from stages").item() == 8
        record("r9")
        assert xr.flush(5)
        assert opened.sql(HEADLINE).rows() == fresh(isolated_lake)


def test_a_deleted_file_and_an_emptied_table_are_seen(
        lake: Callable[[], xr.Lake], isolated_lake: str, tmp_path: object) -> None:
    record("r0")
    assert xr.flush(5)
    record("r1", label="other")
    with lake() as opened:
        warm(opened)
        assert len(opened.sql(HEADLINE)) == 2
        shutil.rmtree(os.path.join(isolated_lake, "stages", "label=other"))
        assert opened.sql(HEADLINE).rows() == fresh(isolated_lake)
        assert len(opened.sql(HEADLINE)) == 1


def test_runs_and_stages_joined_stay_consistent(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    joined = ("select s.run_id, r.status, s.name from stages s join runs r using (run_id) "
              "where s.type = 'filtering' order by 1")
    record("r0")
    with lake() as opened:
        for _ in range(LOAD_AFTER):
            opened.sql(joined)
        assert set(opened._cache.copies) == {"runs", "stages"}  # type: ignore[union-attr]
        record("r1")
        assert xr.flush(5)
        assert opened.sql(joined).rows() == fresh(isolated_lake, joined)
        assert len(opened.sql(joined)) == 2


def test_no_copy_before_the_third_query_or_when_turned_off(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    record("r0")
    with lake() as opened:
        for _ in range(LOAD_AFTER - 1):
            opened.sql(HEADLINE)
        assert opened._cache is not None and not opened._cache.copies
    with xr.Lake(isolated_lake, cache_bytes=0) as off:
        for _ in range(LOAD_AFTER + 1):
            off.sql(HEADLINE)
        assert off._cache is None


def test_a_table_over_the_bound_is_read_from_its_files(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    record("r0")
    assert xr.flush(5)
    with xr.Lake(isolated_lake, cache_bytes=1) as tiny:
        for _ in range(LOAD_AFTER + 1):
            assert tiny.sql(HEADLINE).rows() == fresh(isolated_lake)
        assert tiny._cache is not None and not tiny._cache.copies
        assert "stages" in tiny._cache.skipped
        view = tiny.connection.execute(
            "select sql from duckdb_views() where view_name = 'stages'").fetchall()[0][0]
        assert "xray_cache" not in view


def test_refresh_points_the_views_back_at_the_files(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    record("r0")
    with lake() as opened:
        warm(opened)
        opened.refresh()
        record("r1")
        assert xr.flush(5)
        # SQL on the connection itself: after refresh() the views read the files again
        direct = opened.connection.execute(
            "select count(*) from stages where type = 'filtering'").fetchall()[0][0]
        assert direct == 2
        assert opened.sql(HEADLINE).rows() == fresh(isolated_lake)


@pytest.mark.parametrize("per", ["stage", "run"])
def test_find_through_the_cache_matches_a_fresh_lake(
        lake: Callable[[], xr.Lake], isolated_lake: str, per: str) -> None:
    for i in range(3):
        record(f"r{i}", fail=i + 1)
    query = {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.4}}}
    with lake() as opened:
        for _ in range(LOAD_AFTER + 1):
            got = opened.find(query, per=per)
        with xr.Lake(isolated_lake, cache_bytes=0) as plain:
            assert got.equals(plain.find(query, per=per))


def test_cache_after_one_copies_at_the_first_query(
        lake: Callable[[], xr.Lake], isolated_lake: str) -> None:
    record("r0")
    assert xr.flush(5)
    with xr.Lake(isolated_lake, cache_after=1) as eager:
        assert eager.sql(HEADLINE).rows() == fresh(isolated_lake)
        assert eager._cache is not None and set(eager._cache.copies) == {"stages"}
