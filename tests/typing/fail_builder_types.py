"""Type-checker only (never run): builder misuse mypy must reject, because columns are typed.

Each rejected line carries the error code tests/test_query_typing.py expects on it.
"""

from __future__ import annotations

import datetime as dt

import xray_lake as xr
from xray_lake.query import Query, candidate, run, stage
from xray_lake.query.lake import Lake

stage.fail_ratio > "x"  # expect: operator
stage.n_in <= "100"  # expect: operator
"0.9" < stage.fail_ratio  # expect: operator
stage.fail_ratio < dt.datetime(2024, 5, 1)  # expect: operator
run.started_at > "2024-05-01"  # expect: operator
stage.type.gt(3)  # expect: arg-type
stage.type.eq(3)  # expect: arg-type
stage.fail_ratio.eq("0.9")  # expect: arg-type
stage.metrics["ndcg"].ge("high")  # expect: arg-type
stage.name.isin([1, 2])  # expect: list-item
stage.type.regex(3)  # expect: arg-type
candidate.passed > True  # expect: operator
stage.fial_ratio  # expect: attr-defined
Query().where(stage.type)  # expect: arg-type
Query().limit("10")  # expect: arg-type
candidate.field("price", float) > "100"  # expect: operator
candidate.field("brand", str).gt(3)  # expect: arg-type


def through_the_lake(lake: Lake) -> None:
    """Misuse through `lake.query()` / `lake.journey()` is caught too: they return typed objects."""
    lake.query().where(stage.type)  # expect: arg-type
    lake.query().limit("10")  # expect: arg-type
    lake.query().where(stage.fail_ratio > "x")  # expect: operator
    lake.query().order_by_name()  # expect: attr-defined
    lake.journey("r-1", "c-1").verdikt  # expect: attr-defined
    lake.journey("r-1", 7)  # expect: arg-type


def through_the_package(root: str) -> None:
    """`xr.Lake` (loaded on first use) keeps its type for the checker too."""
    xr.Lake(root).query().limit("10")  # expect: arg-type
