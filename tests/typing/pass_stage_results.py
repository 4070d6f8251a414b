"""Type-checker only (never run): list-stage decorators accept what each stage type returns.

Sequences (list, tuple, Sequence), awaited sequences, iterators of generator stages, and each
stage type's own result helper; plugins and custom-type stages keep their signatures.
`mypy tests/typing/pass_stage_results.py` must pass; tests/test_typing.py runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, assert_type

import xray_lake as xr

Row = dict[str, Any]
T = TypeVar("T")


class Offer(TypedDict):
    id: str
    price: float


@dataclass
class Product:
    id: str
    price: float


@xr.filtering_stage("f1")
def filter_helpers(items: list[Row]) -> list[xr.Filtered[Row]]:
    return [xr.Filtered(i, True) for i in items]


@xr.filtering_stage("f2", passed="ok")
def filter_tuple(items: list[Offer]) -> tuple[Offer, ...]:
    return tuple(items)


@xr.filtering_stage
def filter_sequence(items: Sequence[Product]) -> Sequence[Product]:
    return items


@xr.filtering_stage("f3")
async def filter_async(items: list[Row]) -> list[xr.Filtered[Row]]:
    return [xr.Filtered(i, False, "why") for i in items]


@xr.filtering_stage("f4", passed="ok")
def filter_gen(items: list[Row]) -> Iterator[Row]:
    yield from items


@xr.scoring_stage("s1")
def score_helpers(items: list[Row]) -> list[xr.Scored[Row]]:
    return [xr.Scored(i, 1.0) for i in items]


@xr.scoring_stage
async def score_agen(items: list[Row]) -> AsyncIterator[xr.Scored[Row]]:
    for item in items:
        yield xr.Scored(item, None)


@xr.ranking_stage("r1")
def rank_helpers(items: list[xr.Scored[Row]]) -> list[xr.Scored[Row]]:
    return sorted(items, key=lambda s: s.score or 0.0)


@xr.ranking_stage
def rank_generic(items: list[T]) -> list[T]:
    return items


@xr.retrieval_stage("g1")
def retrieve_helpers(query: str) -> list[xr.Generated[str]]:
    return [xr.Generated(query, "echo")]


@xr.generation_stage("g2", reason="why")
def generate_any(prompt: str) -> list[Any]:
    return [prompt]


@xr.generation_stage("g3")
def generate_ints(n: int) -> list[int]:
    return list(range(n))


rows: list[Row] = [{"id": "a"}]
assert_type(filter_helpers(rows), list[xr.Filtered[Row]])
assert_type(filter_tuple([]), tuple[Offer, ...])
assert_type(filter_sequence([]), Sequence[Product])
assert_type(filter_gen(rows), Iterator[Row])
assert_type(score_helpers(rows), list[xr.Scored[Row]])
assert_type(score_agen(rows), AsyncIterator[xr.Scored[Row]])
assert_type(rank_generic([1, 2]), list[int])
assert_type(retrieve_helpers("q"), list[xr.Generated[str]])
assert_type(generate_any("p"), list[Any])
assert_type(generate_ints(3), list[int])


async def use_async() -> None:
    assert_type(await filter_async(rows), list[xr.Filtered[Row]])


# --- custom stage types and metric plugins ----------------------------------------------------


judge_type = xr.register_stage_type(
    "typing_judge", base="filtering",
    candidate_fields={"verdict": "reason_label", "rationale": "reason_text"})


@xr.stage("judge", type="typing_judge")
def judge(items: list[Row], strict: bool = False) -> list[Row]:
    return items


@xr.stage("plain")
def plain(x: int) -> str:
    return str(x)


@xr.metric("typing_judge", name="reject_share")
def reject_share(candidates: Any, stage: Mapping[str, Any]) -> float | None:
    return None


def count_plugin(candidates: Any, stage: Mapping[str, Any]) -> dict[str, float]:
    return {"n": 1.0}


xr.register_metric("filtering", count_plugin, name="count", frame="arrow", budget_ms=5)

assert_type(judge(rows), list[Row])
assert_type(judge(rows, strict=True), list[Row])
assert_type(plain(1), str)
assert_type(reject_share(None, {}), float | None)
assert_type(judge_type.base, str)


# output_key=: the candidates are inside the returned dict, so any return type is accepted
@xr.filtering_stage("f-dict", passed="meta.ok", output_key="documents")
def filter_dict(items: list[Row]) -> dict[str, list[Row]]:
    return {"documents": items}


@xr.retrieval_stage("r-dict", score="score", output_key="documents", candidates=None)
async def retrieve_dict(query: str) -> dict[str, list[Row]]:
    return {"documents": []}


assert_type(filter_dict([]), dict[str, list[Row]])
