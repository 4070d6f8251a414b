"""The compiler's SQL for representative queries matches tests/snapshots/*.sql.

`XRAY_UPDATE_SNAPSHOTS=1 pytest tests/test_query_compiler.py` rewrites the snapshot files;
review the diff before committing it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import xray_lake as xr
from xray_lake.query import candidate, run, stage
from xray_lake.query.builder import Query
from xray_lake.query.compiler import CompiledQuery, UnknownNodeError, compile_query
from xray_lake.query.jsonql import compile_find
from xray_lake.query.nodes import (
    Column,
    Compare,
    HasCandidate,
    Param,
    Predicate,
    Table,
    walk,
)
from xray_lake.query.nodes import Query as QueryNode

SNAPSHOTS = Path(__file__).parent / "snapshots"
NOW = dt.datetime(2024, 5, 10, 12, tzinfo=dt.UTC)
HEADLINE = {"pipeline": {"label": "competitor_discovery"},
            "stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}

CASES: dict[str, Callable[[], CompiledQuery]] = {
    "headline": lambda: compile_find(HEADLINE, columns="all"),
    "headline_default_columns": lambda: compile_find(HEADLINE),
    "label_restriction": lambda: compile_find({"pipeline": {"label": "competitor_discovery"}},
                                              columns="all"),
    "per_run": lambda: compile_find(HEADLINE, per="run", columns="all"),
    "per_run_default_columns": lambda: compile_find(HEADLINE, per="run"),
    "per_run_runs_only": lambda: compile_find({"pipeline": {"status": "failure"}}, per="run",
                                              columns="all"),
    "candidate_clause": lambda: compile_find({
        "stage": {"name": "price-filter"},
        "candidate": {"candidate_id": "42", "passed": False},
    }, columns="all"),
    "metrics_and_reason_counts": lambda: compile_find({
        "stage": {"$metrics.ndcg": {"$lt": 0.5}, "$reasonCounts.price_too_high": {"$gt": 100}},
    }, columns="all"),
    "since_until": lambda: compile_find({
        "pipeline": {"label": "competitor_discovery"},
        "stage": {"$since": "2024-05-02T00:00:00Z"},
        "$since": "7d", "$until": "2024-05-09",
    }, now=NOW, columns="all"),
    "or_not_in": lambda: compile_find({
        "pipeline": {"$or": [{"label": "a"}, {"label": "b"}]},
        "stage": {
            "$or": [{"type": {"$in": ["filtering", "ranking"]}},
                    {"$not": {"name": {"$regex": "^tmp"}}}],
            "status": {"$nin": ["failure"]},
            "validation_error": {"$exists": False},
        },
    }, columns="all"),
    "builder_order_limit": lambda: Query().where(
        stage.type == "scoring", run.label == "search", stage.score_p90 <= 0.2,
    ).select(stage.run_id, stage.name, stage.score_p90, run.started_at, stage.metrics["ndcg"]) \
        .order_by(stage.score_p90.desc(), run.started_at).limit(20).compile(),
    "builder_per_run_mixed": lambda: Query().where(
        (run.status == "failure") | (stage.type == "ranking"),
        candidate.candidate_id.isin(["42", "43"]),
    ).since(dt.datetime(2024, 5, 1, tzinfo=dt.UTC)).per_run().compile(),
}


def _render(compiled: CompiledQuery) -> str:
    return f"{compiled.sql}\n-- params: {list(compiled.params)!r}\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_sql_matches_snapshot(name: str) -> None:
    text = _render(CASES[name]())
    path = SNAPSHOTS / f"{name}.sql"
    if os.environ.get("XRAY_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path.name}: run with XRAY_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"{name}: SQL changed; XRAY_UPDATE_SNAPSHOTS=1 rewrites it"


def test_every_snapshot_has_a_case() -> None:
    assert {p.stem for p in SNAPSHOTS.glob("*.sql")} == set(CASES)


def test_every_case_runs_on_an_empty_lake(tmp_path: Path) -> None:
    """DuckDB binds each compiled query (columns, types, parameters) against the views."""
    lake = xr.Lake(str(tmp_path / "empty"))
    for name, case in CASES.items():
        compiled = case()
        assert lake.sql(compiled.sql, list(compiled.params)).height == 0, name


def test_one_param_object_binds_once_however_often_it_appears() -> None:
    compiled = compile_find(HEADLINE, columns="all")
    assert compiled.params == ("competitor_discovery", "filtering", 0.9)
    assert compiled.sql.count("$1") == 2  # runs (join) and stages scans


def test_an_unknown_node_raises_a_named_error() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Sideways(Predicate):
        pass

    with pytest.raises(UnknownNodeError, match="Sideways"):
        compile_query(QueryNode(where=(Sideways(),)))
    with pytest.raises(UnknownNodeError, match="Query node"):
        compile_query("select 1")  # type: ignore[arg-type]


def test_nodes_are_immutable_and_compare_by_value() -> None:
    a = Compare(Column(Table.STAGE, "fail_ratio"), ">", Param(0.9))
    b = stage.fail_ratio > 0.9
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.op = "<"  # type: ignore[misc]
    base = Query().where(b)
    assert base.limit(3).node.limit == 3 and base.node.limit is None


def test_builder_groups_candidate_conditions_of_one_where_call() -> None:
    query = Query().where(candidate.candidate_id == "42", candidate.passed.is_false(),
                          stage.type == "filtering")
    clauses = [n for n in walk(query.node) if isinstance(n, HasCandidate)]
    assert len(clauses) == 1


def test_a_stage_only_query_scans_no_runs() -> None:
    from xray_lake.query import run, stage
    from xray_lake.query.builder import Query

    lone = Query(None).where(stage.type == "filtering", stage.fail_ratio > 0.9).select(  # type: ignore[arg-type]
        stage.run_id, stage.fail_ratio)
    assert "JOIN" not in lone.sql()[0].upper()
    with_run = lone.select(stage.run_id, run.status)
    assert "LEFT JOIN RUNS" in " ".join(with_run.sql()[0].upper().split())
