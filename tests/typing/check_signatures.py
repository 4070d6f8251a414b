"""Type-checker only (never run): decorated callables keep their exact signatures and returns.

`mypy tests/typing/check_signatures.py` must pass; tests/test_typing.py runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Annotated, Any, assert_type

import xray_lake as xr

Row = dict[str, int]


# --- every stage decorator, bare and configured, on plain functions ------------------------


@xr.raw_stage
def raw_bare(x: int, y: str) -> list[Row]:
    return [{y: x}]


@xr.raw_stage("raw-named")
def raw_named(x: int, y: str = "a", *, flag: bool = False) -> list[Row]:
    return [{y: x}]


@xr.retrieval_stage
def retrieval_bare(query: str) -> list[Row]:
    return []


@xr.retrieval_stage("search", id="sku")
def retrieval_configured(query: str, limit: int) -> list[Row]:
    return []


@xr.generation_stage
def generation_bare(prompt: str) -> list[xr.Generated[str]]:
    return [xr.Generated(prompt, "echo")]


@xr.generation_stage("kw", id="text", reason="why")
def generation_configured(product: Annotated[Row, xr.RawInput("product")]) -> list[Row]:
    return [product]


@xr.filtering_stage
def filtering_bare(items: list[Row]) -> list[Row]:
    return items


@xr.filtering_stage("x", passed="p")
def filtering_configured(items: Annotated[list[Row], xr.Candidates()], limit: int) -> list[Row]:
    return items[:limit]


@xr.filtering_stage("helpers")
def filtering_helpers(items: list[Row]) -> list[xr.Filtered[Row]]:
    return [xr.Filtered(i, True) for i in items]


@xr.scoring_stage
def scoring_bare(items: list[Row]) -> list[xr.Scored[Row]]:
    return [xr.Scored(i, 1.0) for i in items]


@xr.scoring_stage("s", id="sku", score="relevance")
def scoring_configured(items: list[Row]) -> list[Row]:
    return items


@xr.ranking_stage
def ranking_bare(items: list[Row]) -> list[Row]:
    return items


@xr.ranking_stage("r", score="s")
def ranking_configured(items: list[Row]) -> tuple[Row, ...]:
    return tuple(items)


rows: list[Row] = [{"a": 1}]

assert_type(raw_bare(1, "a"), list[Row])
assert_type(raw_bare(x=1, y="a"), list[Row])
assert_type(raw_named(1), list[Row])
assert_type(raw_named(1, "b", flag=True), list[Row])
assert_type(retrieval_bare("q"), list[Row])
assert_type(retrieval_configured("q", 3), list[Row])
assert_type(generation_bare("p"), list[xr.Generated[str]])
assert_type(generation_configured({"a": 1}), list[Row])
assert_type(filtering_bare(rows), list[Row])
assert_type(filtering_configured(rows, 2), list[Row])
assert_type(filtering_configured(items=rows, limit=2), list[Row])
assert_type(filtering_helpers(rows), list[xr.Filtered[Row]])
assert_type(scoring_bare(rows), list[xr.Scored[Row]])
assert_type(scoring_configured(rows), list[Row])
assert_type(ranking_bare(rows), list[Row])
assert_type(ranking_configured(rows), tuple[Row, ...])


# --- async functions, generators and async generators ------------------------------------


@xr.scoring_stage
async def scoring_async(items: list[Row]) -> list[Row]:
    return items


@xr.filtering_stage("af", passed="p")
async def filtering_async(items: list[Row], *, limit: int) -> list[Row]:
    return items[:limit]


@xr.retrieval_stage
def retrieval_gen(query: str) -> Iterator[Row]:
    yield {query: 1}


@xr.generation_stage("g", reason="why")
def generation_gen(n: int) -> Iterator[Row]:
    yield {"n": n}


@xr.raw_stage
async def raw_agen(n: int) -> AsyncIterator[int]:
    yield n


@xr.ranking_stage("ag")
async def ranking_agen(items: list[Row]) -> AsyncIterator[Row]:
    for item in items:
        yield item


coro_1 = assert_type(scoring_async(rows), Coroutine[Any, Any, list[Row]])
coro_2 = assert_type(filtering_async(rows, limit=1), Coroutine[Any, Any, list[Row]])
assert_type(retrieval_gen("q"), Iterator[Row])
assert_type(generation_gen(1), Iterator[Row])
assert_type(raw_agen(1), AsyncIterator[int])
assert_type(ranking_agen(rows), AsyncIterator[Row])


async def use_async() -> None:
    assert_type(await scoring_async(rows), list[Row])
    assert_type(await filtering_async(rows, limit=1), list[Row])
    async for n in raw_agen(1):
        assert_type(n, int)
    async for row in ranking_agen(rows):
        assert_type(row, Row)


# --- methods of a pipeline class, and its entrypoints -------------------------------------


@xr.pipeline("competitor_discovery", id="run_id")
class Discovery:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @xr.entrypoint
    def find(self, product: Row, catalog: list[Row]) -> Row:
        return self.rank(self.keep(self.search(catalog), 1))[0]

    @xr.entrypoint
    async def find_async(self, product: Row) -> Row | None:
        scored = await self.score([product])
        return scored[0] if scored else None

    @xr.retrieval_stage("search")
    def search(self, catalog: list[Row]) -> list[Row]:
        return catalog

    @xr.filtering_stage("keep", passed="p")
    def keep(self, items: Annotated[list[Row], xr.Candidates("items")], n: int) -> list[Row]:
        return items[:n]

    @xr.scoring_stage
    async def score(self, items: list[Row]) -> list[Row]:
        return items

    @xr.ranking_stage
    def rank(self, items: list[Row]) -> list[Row]:
        return items

    @xr.raw_stage
    def stream(self, n: int) -> Iterator[int]:
        yield n

    @classmethod
    def build(cls, run_id: str) -> Discovery:
        return cls(run_id)


discovery = Discovery("r-1")
assert_type(discovery, Discovery)
assert_type(Discovery.build("r-2"), Discovery)
assert_type(discovery.find({"a": 1}, rows), Row)
coro_3 = assert_type(discovery.find_async({"a": 1}), Coroutine[Any, Any, Row | None])
assert_type(discovery.search(rows), list[Row])
assert_type(discovery.keep(rows, 2), list[Row])
assert_type(discovery.keep(items=rows, n=2), list[Row])
coro_4 = assert_type(discovery.score(rows), Coroutine[Any, Any, list[Row]])
assert_type(discovery.rank(rows), list[Row])
assert_type(discovery.stream(3), Iterator[int])
assert_type(Discovery.rank(discovery, rows), list[Row])


@xr.pipeline
class BarePipeline:
    @xr.entrypoint
    def go(self) -> int:
        return 1


assert_type(BarePipeline().go(), int)


# --- pipelines on functions ----------------------------------------------------------------


@xr.pipeline("fn-pipe", id="request_id")
def handle(query: str, request_id: str) -> list[Row]:
    return filtering_bare(retrieval_bare(query))


@xr.pipeline("async-pipe")
async def handle_async(query: str) -> int:
    return len(await scoring_async([]))


@xr.pipeline
def bare_function_pipeline(x: int) -> str:
    return str(x)


assert_type(handle("q", "r-1"), list[Row])
assert_type(handle(query="q", request_id="r-1"), list[Row])
coro_5 = assert_type(handle_async("q"), Coroutine[Any, Any, int])
assert_type(bare_function_pipeline(1), str)


# --- result helpers, context managers, module functions --------------------------------------


assert_type(xr.Scored({"a": 1}, 0.5), xr.Scored[dict[str, int]])
assert_type(xr.Filtered("x", False, "why"), xr.Filtered[str])
assert_type(xr.Generated(1), xr.Generated[int])
assert_type(xr.Scored({"a": 1}, None).item, dict[str, int])
assert_type(xr.flush(), bool)
assert_type(xr.flush(1.5), bool)
assert_type(xr.stats(), dict[str, Any])
assert_type(xr.Candidates(), xr.Candidates)
assert_type(xr.RawInput("q"), xr.RawInput)


def use_context() -> None:
    with xr.run("label", run_id="r1", attributes={"k": "v"}) as run:
        assert_type(run, xr.Run)
        assert_type(run.run_id, str | None)
        with run.stage("f", type="filtering", passed="ok") as st:
            assert_type(st, xr.Stage)
            st.input(rows, threshold=1)
            st.output(rows)
        with xr.stage("r", type="ranking") as other:
            assert_type(other.stage_id, str | None)


async def use_async_context() -> None:
    async with xr.run("label") as run, run.stage("s", type="scoring") as st:
        assert_type(st, xr.Stage)
