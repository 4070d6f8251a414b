"""Type-checker only (never run): correct uses of the typed query builder, which mypy must accept.

Checked by tests/test_query_typing.py.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa

from xray_lake.query import (
    BoolCol,
    NumCol,
    Query,
    StrCol,
    TimeCol,
    candidate,
    has_candidate,
    run,
    stage,
)
from xray_lake.query.journey import Journey
from xray_lake.query.lake import Lake
from xray_lake.query.nodes import Order, Predicate

ratio: NumCol = stage.fail_ratio
kind: StrCol = stage.type
passed: BoolCol = candidate.passed
started: TimeCol = run.started_at
price: NumCol = candidate.field("price", float)  # promoted fields, typed by their type
quantity: NumCol = candidate.field("qty", int)
brand: StrCol = candidate.field("brand", str)
in_stock: BoolCol = candidate.field("in_stock", bool)

conditions: list[Predicate] = [
    stage.type == "filtering",
    stage.fail_ratio > 0.9,
    stage.n_in >= 100,  # an int where a float is expected
    0.5 < stage.pass_ratio,  # noqa: SIM300 (the reflected operator is typed too)
    stage.type.gt("a"),
    stage.name.isin(["search", "rerank"]),
    stage.validation_error.is_null(),
    stage.metrics["ndcg"] <= 0.3,
    stage.reason_counts["price_too_high"].between(10, 100),
    run.started_at >= dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
    run.started_at.since("7d"),
    stage.date >= dt.date(2024, 5, 1),
    stage.date < "2024-06-01",
    candidate.passed.is_false() & (candidate.candidate_id == "42"),
    ~has_candidate(candidate.score > 0.5) | (run.status != "success"),
    (price > 100) & (brand == "acme") & in_stock.is_true(),
]
order: Order = stage.fail_ratio.desc()


def headline(lake: Lake) -> tuple[pl.DataFrame, pa.Table, tuple[str, list[object]]]:
    query: Query = Query(lake).where(*conditions).order_by(order, run.started_at).limit(10)
    per_run = query.per_run().select(run.run_id, run.status)
    text: str = query.sql()[0]
    return per_run.to_polars(), query.to_arrow(), (text, query.sql()[1])


def through_the_lake(lake: Lake) -> tuple[pl.DataFrame, str, pl.DataFrame]:
    """The entry point keeps the builder's and the journey's types (no Any on the way)."""
    query: Query = lake.query().where(stage.fail_ratio > 0.9).order_by(order).limit(5)
    path: Journey = lake.journey("r-1", "c-1")
    verdict: str = path.verdict
    return query.select(stage.name, stage.fail_ratio).to_polars(), verdict, path.steps
