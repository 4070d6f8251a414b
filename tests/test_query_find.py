"""`find` (JSON language) and the typed builder answer questions over a hand-written lake."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import xray_lake as xr
from xray_lake.errors import QueryError
from xray_lake.query import candidate, has_candidate, run, stage
from xray_lake.query.jsonql import compile_find, find, parse
from xray_lake.query.nodes import Table, TimeBound
from xray_lake.records.schema import SCHEMAS
from xray_lake.storage.layout import escape_label

UTC = dt.UTC
CD = "competitor_discovery"


def _write(root: Path, table: str, label: str, date: str, rows: list[dict[str, Any]]) -> None:
    folder = root / table / f"label={escape_label(label)}" / f"date={date}"
    folder.mkdir(parents=True, exist_ok=True)
    schema = SCHEMAS[table]
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    path = folder / f"part-v1-t-{len(os.listdir(folder))}.parquet"
    pq.write_table(pa.table(columns, schema=schema), path)


def _ts(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2024, 5, day, hour, tzinfo=UTC)


RUNS = [  # (run_id, label, day, hour, status)
    ("r1", CD, 1, 10, "success"),
    ("r2", CD, 3, 9, "failure"),
    ("r3", "other", 2, 12, "success"),
]
STAGES = [  # run_id, stage_id, name, type, seq, extra columns
    ("r1", "s1", "search", "retrieval", 1, {"n_in": 0, "n_out": 20}),
    ("r1", "s2", "price-filter", "filtering", 2,
     {"n_in": 20, "n_out": 1, "fail_ratio": 0.95, "n_failed": 19,
      "reason_counts": [("price_too_high", 15), ("out_of_stock", 4)],
      "metrics": [("ndcg", 0.5)]}),
    ("r1", "s3", "relevance", "scoring", 3, {"n_in": 1, "n_out": 1, "score_mean": 0.4}),
    ("r2", "s4", "price-filter", "filtering", 1,
     {"n_in": 4, "n_out": 2, "fail_ratio": 0.5, "n_failed": 2,
      "reason_counts": [("price_too_high", 2)], "metrics": []}),
    ("r2", "s5", "rerank", "ranking", 2, {"n_in": 2, "n_out": 2, "validation_error": "bad"}),
    ("r3", "s6", "stock-filter", "filtering", 1,
     {"n_in": 25, "n_out": 2, "fail_ratio": 0.92, "n_failed": 23,
      "reason_counts": [("out_of_stock", 23)], "metrics": [("ndcg", 0.9)]}),
]
CANDIDATES = [  # run_id, stage_id, candidate_id, passed, reason_label
    ("r1", "s2", "42", False, "price_too_high"),
    ("r1", "s2", "7", True, None),
    ("r2", "s4", "42", True, None),
    ("r3", "s6", "9", False, "out_of_stock"),
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> xr.Lake:
    root = tmp_path_factory.mktemp("find") / "lake"
    where = {r[0]: (r[1], f"2024-05-{r[2]:02d}", r[2], r[3]) for r in RUNS}
    for run_id, label, day, hour, status in RUNS:
        _write(root, "runs", label, f"2024-05-{day:02d}", [{
            "run_id": run_id, "started_at": _ts(day, hour), "finished_at": _ts(day, hour + 1),
            "duration_ms": 3600e3, "status": status, "n_stages": 3,
            "error_message": "boom" if status == "failure" else None,
        }])
    for run_id, stage_id, name, kind, seq, extra in STAGES:
        label, date, day, hour = where[run_id]
        _write(root, "stages", label, date, [{
            "run_id": run_id, "stage_id": stage_id, "name": name, "type": kind, "seq": seq,
            "started_at": _ts(day, hour) + dt.timedelta(minutes=seq), "status": "success",
            **extra,
        }])
    for run_id, stage_id, cid, passed, reason in CANDIDATES:
        label, date, _, _ = where[run_id]
        _write(root, "candidates", label, date, [{
            "run_id": run_id, "stage_id": stage_id, "candidate_id": cid, "passed": passed,
            "reason_label": reason,
        }])
    return xr.Lake(str(root))


def stage_ids(lake: xr.Lake, query: dict[str, Any], **kw: Any) -> list[str]:
    return find(lake, query, **kw)["stage_id"].to_list()


# --------------------------------------------------------------------------- headline


def test_headline_question_finds_the_filtering_stage_that_dropped_over_90_percent(
    lake: xr.Lake,
) -> None:
    found = lake.find({"pipeline": {"label": CD},
                       "stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}},
                      columns="all")
    assert found["stage_id"].to_list() == ["s2"]
    row = found.row(0, named=True)
    assert row["run_status"] == "success" and row["run_started_at"] == _ts(1, 10)
    assert row["label"] == CD and row["date"] == "2024-05-01"
    assert len(found.columns) == len(set(found.columns))
    assert "run_run_id" not in found.columns and "run_label" not in found.columns


def test_the_default_columns_are_ids_names_counts_ratios_and_what_the_query_tests(
        lake: xr.Lake) -> None:
    found = lake.find({"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}})
    assert found.columns == ["run_id", "label", "date", "stage_id", "name", "type", "n_in",
                             "n_out", "n_passed", "n_failed", "fail_ratio", "pass_ratio"]
    assert sorted(found["stage_id"]) == ["s2", "s6"]
    tested = lake.find({"pipeline": {"status": "success"},
                        "stage": {"$reasonCounts.out_of_stock": {"$gt": 0}}})
    assert tested.columns[-2:] == ["run_status", "reason_counts.out_of_stock"]
    per_run = lake.find({"stage": {"type": "filtering"}}, per="run")
    assert per_run.columns == ["run_id", "label", "date", "started_at", "status", "n_stages",
                               "n_matching_stages", "input_json"]
    everything = lake.find({"stage": {"type": "filtering"}}, columns="all")
    assert {"run_status", "error_message", "reason_counts", "metrics"} <= set(everything.columns)
    assert len(lake.find({}, per="run", columns="all").columns) > len(per_run.columns)


def test_columns_keep_only_the_named_result_columns_in_that_order(lake: xr.Lake) -> None:
    q = {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}
    found = lake.find(q, columns=["fail_ratio", "stage_id", "run_status",
                                  "reason_counts.out_of_stock"])
    assert found.columns == ["fail_ratio", "stage_id", "run_status",
                             "reason_counts.out_of_stock"]
    assert sorted(found.rows()) == [(0.92, "s6", "success", 23), (0.95, "s2", "success", 4)]
    per_run = lake.find(q, per="run", columns=["run_id", "status"])
    assert sorted(per_run.rows()) == [("r1", "success"), ("r3", "success")]


def test_columns_without_a_run_column_never_read_runs(lake: xr.Lake) -> None:
    q = {"stage": {"type": "filtering"}}
    assert " runs " not in compile_find(q, columns=["run_id", "fail_ratio"]).sql
    assert " runs " in compile_find(q, columns=["run_id", "run_status"]).sql


@pytest.mark.parametrize(("columns", "message"), [
    (["fail_ration"], "Did you mean 'fail_ratio'"),
    (["run_run_id"], "unknown column 'run_run_id'"),
    ([], "columns is empty"),
    ("fail_ratio", "a list of column names"),
    ([3], "is not a column name"),
])
def test_bad_columns_say_what_is_valid(lake: xr.Lake, columns: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        lake.find({"stage": {"type": "filtering"}}, columns=columns)


def test_without_a_label_every_pipeline_answers(lake: xr.Lake) -> None:
    assert stage_ids(lake, {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}) == \
        ["s2", "s6"]


def test_per_run_gives_one_row_per_run_with_its_matching_stage_count(lake: xr.Lake) -> None:
    found = lake.find({"stage": {"type": "filtering"}}, per="run")
    assert found["run_id"].to_list() == ["r1", "r3", "r2"]  # by start time
    assert found["n_matching_stages"].to_list() == [1, 1, 1]
    everything = find(lake, {"pipeline": {"label": CD}}, per="run")
    assert dict(zip(everything["run_id"], everything["n_matching_stages"], strict=True)) == \
        {"r1": 3, "r2": 2}
    assert "status" in everything.columns and "run_status" not in everything.columns


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(("spec", "expected"), [
    ({"type": "filtering"}, ["s2", "s6", "s4"]),
    ({"type": {"$eq": "ranking"}}, ["s5"]),
    ({"type": {"$ne": "filtering"}}, ["s1", "s3", "s5"]),
    ({"$nIn": {"$gt": 20}}, ["s6"]),
    ({"$nIn": {"$gte": 20}}, ["s2", "s6"]),
    ({"$nOut": {"$lt": 2}}, ["s2", "s3"]),
    ({"$nOut": {"$lte": 1}}, ["s2", "s3"]),
    ({"$failRatio": {"$gt": 0.4, "$lt": 0.93}}, ["s6", "s4"]),
    ({"name": {"$in": ["rerank", "search"]}}, ["s1", "s5"]),
    ({"name": {"$nin": ["rerank", "search", "price-filter"]}}, ["s3", "s6"]),
    ({"name": {"$in": []}}, []),
    ({"fail_ratio": {"$nin": [0.5]}}, ["s1", "s2", "s3", "s6", "s5"]),  # nulls are "not in"
    ({"fail_ratio": {"$in": [0.5, None]}}, ["s1", "s3", "s4", "s5"]),
    ({"validation_error": {"$exists": True}}, ["s5"]),
    ({"validation_error": None}, ["s1", "s2", "s3", "s6", "s4"]),
    ({"validation_error": {"$ne": None}}, ["s5"]),
    ({"name": {"$regex": "^price-"}}, ["s2", "s4"]),
    ({"name": {"$regex": "(?i)FILTER$"}}, ["s2", "s6", "s4"]),
    ({"$failRatio": {"$not": {"$gt": 0.9}}}, ["s1", "s3", "s4", "s5"]),
    ({"$or": [{"type": "ranking"}, {"$failRatio": {"$gt": 0.93}}]}, ["s2", "s5"]),
    ({"$and": [{"type": "filtering"}, {"name": "price-filter"}]}, ["s2", "s4"]),
    ({"$not": {"type": "filtering"}}, ["s1", "s3", "s5"]),
    ({"$durationMs": {"$exists": False}}, ["s1", "s2", "s3", "s6", "s4", "s5"]),
])
def test_every_operator(lake: xr.Lake, spec: dict[str, Any], expected: list[str]) -> None:
    assert stage_ids(lake, {"stage": spec}) == expected


def test_metrics_map_entries_and_reason_counts(lake: xr.Lake) -> None:
    assert stage_ids(lake, {"stage": {"$metrics.ndcg": {"$gt": 0.6}}}) == ["s6"]
    assert stage_ids(lake, {"stage": {"$metrics.ndcg": {"$exists": True}}}) == ["s2", "s6"]
    assert stage_ids(lake, {"stage": {"$reasonCounts.price_too_high": {"$gte": 10}}}) == ["s2"]
    assert stage_ids(lake, {"stage": {"$reasonCounts.out_of_stock": 23}}) == ["s6"]
    assert stage_ids(lake, {"stage": {"$reasonCounts.no such reason": {"$gt": 0}}}) == []


def test_pipeline_conditions_filter_the_run(lake: xr.Lake) -> None:
    assert stage_ids(lake, {"pipeline": {"status": "failure"}}) == ["s4", "s5"]
    assert stage_ids(lake, {"pipeline": {"error_message": {"$regex": "bo+m"}},
                            "stage": {"seq": 2}}) == ["s5"]
    assert stage_ids(lake, {"pipeline": {"label": {"$in": ["other"]}}}) == ["s6"]


def test_top_level_logic_spans_tables(lake: xr.Lake) -> None:
    query = {"$or": [{"pipeline": {"status": "failure"}}, {"stage": {"type": "scoring"}}]}
    assert stage_ids(lake, query) == ["s3", "s4", "s5"]
    assert stage_ids(lake, {"$not": {"pipeline": {"label": CD}}}) == ["s6"]


def test_candidate_clause_matches_stages_having_such_a_candidate(lake: xr.Lake) -> None:
    assert stage_ids(lake, {"candidate": {"candidate_id": "42"}}) == ["s2", "s4"]
    assert stage_ids(lake, {"candidate": {"candidate_id": "42", "passed": False}}) == ["s2"]
    assert stage_ids(lake, {"candidate": {"reason_label": "out_of_stock"},
                            "pipeline": {"label": CD}}) == []
    runs = find(lake, {"candidate": {"candidate_id": "42"}}, per="run")
    assert runs["run_id"].to_list() == ["r1", "r2"]
    assert stage_ids(lake, {"$not": {"candidate": {"passed": False}}}) == \
        ["s1", "s3", "s4", "s5"]


# --------------------------------------------------------------------------- time


def test_since_and_until_bound_the_run_start(lake: xr.Lake) -> None:
    assert stage_ids(lake, {"$since": "2024-05-02"}) == ["s6", "s4", "s5"]
    assert stage_ids(lake, {"$until": "2024-05-01"}) == ["s1", "s2", "s3"]  # whole day
    assert stage_ids(lake, {"$since": _ts(2, 0), "$until": _ts(3, 0)}) == ["s6"]
    assert stage_ids(lake, {"$since": dt.date(2024, 5, 3)}) == ["s4", "s5"]
    assert stage_ids(lake, {"pipeline": {"$since": "2024-05-01T10:00:01+00:00"}}) == \
        ["s6", "s4", "s5"]
    assert stage_ids(lake, {"$since": "100000d"}) == ["s1", "s2", "s3", "s6", "s4", "s5"]
    assert stage_ids(lake, {"$since": "1h"}) == []


def test_stage_since_bounds_the_stage_start(lake: xr.Lake) -> None:
    assert stage_ids(lake, {"stage": {"$since": "2024-05-01T10:02:00"}, "$until": "2024-05-01"}) \
        == ["s2", "s3"]


def test_relative_times_count_back_from_now() -> None:
    now = dt.datetime(2024, 5, 10, 12, tzinfo=UTC)
    query = parse({"$since": "7d", "$until": "90m"}, now=now)
    assert query.where == (TimeBound(Table.RUN, now - dt.timedelta(days=7),
                                     now - dt.timedelta(minutes=90)),)
    compiled = compile_find({"$since": "7d"}, now=now)
    assert "2024-05-03" in compiled.params  # the date partition bound


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("query", "per", "message"), [
    ({"stages": {}}, "stage", "Did you mean 'stage'?"),
    ({"stage": {"typ": "x"}}, "stage", "Did you mean 'type'?"),
    ({"stage": {"type": {"$gtt": 1}}}, "stage", "Did you mean '$gt'?"),
    ({"stage": {"$failRatoi": {"$gt": 1}}}, "stage", "Did you mean '$failRatio'?"),
    ({"pipeline": {"lable": "x"}}, "stage", "Did you mean 'label'?"),
    ({"candidate": {"pased": True}}, "stage", "Did you mean 'passed'?"),
    ({}, "runs", "Did you mean 'run'?"),
    ({"stage": {"$failRatio": {"$gt": "x"}}}, "stage", "number column"),
    ({"stage": {"type": 3}}, "stage", "string column"),
    ({"stage": {"metrics": 3}}, "stage", "$metrics.<name>"),
    ({"stage": {"type": ["a", "b"]}}, "stage", "$in"),
    ({"stage": {"name": {"$regex": 3}}}, "stage", "must be a string"),
    ({"stage": {"$failRatio": {"$regex": "x"}}}, "stage", "regex needs a string"),
    ({"stage": {"type": {"$in": "filtering"}}}, "stage", "takes a list"),
    ({"$since": "last tuesday"}, "stage", "relative time"),
    ({"candidate": {"$since": "7d"}}, "stage", "unknown key '$since'"),
    ({"stage": []}, "stage", "must be an object"),
])
def test_errors_name_the_valid_choices_and_the_nearest(
    lake: xr.Lake, query: dict[str, Any], per: str, message: str,
) -> None:
    with pytest.raises(QueryError) as info:
        find(lake, query, per=per)
    assert message in str(info.value)
    if "Did you mean" in message:
        assert "Valid:" in str(info.value)


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("hostile", [
    "x' or 1=1 --", "'; drop view runs; --", '" OR ""="', "competitor_discovery' --", "$9 or true",
])
def test_values_are_bound_never_pasted(lake: xr.Lake, hostile: str) -> None:
    compiled = compile_find({"pipeline": {"label": hostile}, "stage": {"name": hostile}})
    assert hostile not in compiled.sql and hostile in compiled.params
    assert find(lake, {"pipeline": {"label": hostile}}).height == 0
    assert find(lake, {"stage": {"$reasonCounts." + hostile: {"$gt": 0}}}).height == 0
    assert find(lake, {}).height == len(STAGES)  # the views survived


# --------------------------------------------------------------------------- builder


def test_builder_answers_like_find(lake: xr.Lake) -> None:
    q = lake.query().where(stage.type == "filtering", stage.fail_ratio > 0.9,
                           run.label == CD)
    assert q.to_polars()["stage_id"].to_list() == ["s2"]
    same = compile_find({"pipeline": {"label": CD},
                         "stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}},
                        columns="all")
    assert q.sql() == (same.sql, list(same.params))
    per_run = q.per_run().to_polars()
    assert per_run["run_id"].to_list() == ["r1"] and per_run["n_matching_stages"][0] == 1
    assert q.to_arrow().num_rows == 1


def test_builder_methods_return_new_queries(lake: xr.Lake) -> None:
    base = lake.query().where(stage.type == "filtering")
    ordered = base.order_by(stage.fail_ratio.desc()).limit(2)
    assert base.to_polars()["stage_id"].to_list() == ["s2", "s6", "s4"]
    assert ordered.to_polars()["stage_id"].to_list() == ["s2", "s6"]
    picked = ordered.select(stage.stage_id, stage.metrics["ndcg"], run.status, run.run_id)
    frame = picked.to_polars()
    assert frame.columns == ["stage_id", "metrics.ndcg", "run_status", "run_id"]
    assert frame.rows() == [("s2", 0.5, "success", "r1"), ("s6", 0.9, "success", "r3")]


def test_builder_candidates_times_and_combinators(lake: xr.Lake) -> None:
    q = lake.query()
    assert q.where(candidate.candidate_id == "42", candidate.passed.is_false()) \
        .to_polars()["stage_id"].to_list() == ["s2"]
    assert q.where(~has_candidate(candidate.passed.is_false())) \
        .to_polars()["stage_id"].to_list() == ["s1", "s3", "s4", "s5"]
    assert q.where((stage.type == "ranking") | (stage.reason_counts["out_of_stock"] > 20)) \
        .to_polars()["stage_id"].to_list() == ["s6", "s5"]
    assert q.since("2024-05-02").until(dt.date(2024, 5, 2)).to_polars()["stage_id"] \
        .to_list() == ["s6"]
    assert q.where(run.started_at.since(_ts(3, 0)), stage.name.regex("rank")) \
        .to_polars()["stage_id"].to_list() == ["s5"]
    assert q.where(stage.fail_ratio.between(0.5, 0.92), stage.date >= dt.date(2024, 5, 2)) \
        .to_polars()["stage_id"].to_list() == ["s6", "s4"]
    assert q.where(stage.validation_error != None).to_polars().height == 1  # noqa: E711
    with pytest.raises(QueryError, match="truth value"):
        q.where(0.1 < stage.fail_ratio < 0.9)
    with pytest.raises(QueryError, match="Did you mean 'fail_ratio'"):
        stage.col("fail_ration")
    with pytest.raises(QueryError, match="per-run result has no stage"):
        q.per_run().order_by(stage.seq)
