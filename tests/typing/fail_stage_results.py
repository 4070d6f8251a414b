"""Type-checker only (never run): stage functions mypy must reject at the decorator.

A list stage must return a sequence of candidates (or yield them); a result helper belongs to
its own stage type; a metric plugin takes (candidates, stage). Each rejected line carries the
error code tests/test_typing.py expects on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import xray_lake as xr

Row = dict[str, Any]


@xr.filtering_stage("count")  # expect: type-var
def count(items: list[Row]) -> int:
    return len(items)


@xr.scoring_stage("by-id")  # expect: type-var
def by_id(items: list[Row]) -> dict[str, Row]:
    return {r["id"]: r for r in items}


@xr.ranking_stage("maybe")  # expect: type-var
def maybe(items: list[Row]) -> list[Row] | None:
    return items or None


@xr.scoring_stage("scored-as-filtered")  # expect: type-var
def scored_as_filtered(items: list[Row]) -> list[xr.Filtered[Row]]:
    return [xr.Filtered(i, True) for i in items]


@xr.filtering_stage("filtered-as-scored")  # expect: type-var
def filtered_as_scored(items: list[Row]) -> list[xr.Scored[Row]]:
    return [xr.Scored(i, 1.0) for i in items]


@xr.ranking_stage("ranked-as-generated")  # expect: type-var
def ranked_as_generated(items: list[Row]) -> list[xr.Generated[Row]]:
    return [xr.Generated(i) for i in items]


@xr.retrieval_stage("retrieved-as-filtered")  # expect: type-var
def retrieved_as_filtered(query: str) -> tuple[xr.Filtered[str], ...]:
    return (xr.Filtered(query, True),)


@xr.scoring_stage("async-filtered")  # expect: type-var
async def async_filtered(items: list[Row]) -> list[xr.Filtered[Row]]:
    return []


@xr.filtering_stage("gen-scored")  # expect: type-var
def gen_scored(items: list[Row]) -> Iterator[xr.Scored[Row]]:
    yield from (xr.Scored(i, 0.0) for i in items)


@xr.scoring_stage  # expect: type-var
def bare_not_a_list(items: list[Row]) -> float:
    return 0.0


@xr.metric("filtering")  # expect: type-var
def one_argument(candidates: Any) -> float:
    return 0.0


@xr.stage("judge", type="llm_judge")
def judge(items: list[Row], strict: bool = False) -> list[Row]:
    return items


judge(rows=[])  # expect: call-arg
judge([], strict="yes")  # expect: arg-type
