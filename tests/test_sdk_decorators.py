"""Every decorator on every kind of callable, recorded through the real writer (rows kept in memory)."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import xray_lake as xr
from tests._captured import Captured

Recorded = Callable[[], Captured]
Item = dict[str, Any]

FORMS = ["function", "method", "async", "generator", "async_generator"]

# (decorator, name, n_in, n_out) of the six stages `_drive` runs in this order.
KINDS: list[tuple[str, str, int | None, int | None]] = [
    ("retrieval", "fetch", None, 4),
    ("generation", "expand", None, 2),
    ("filtering", "keep", 4, 3),
    ("scoring", "rate", 3, 3),
    ("ranking", "order", 3, 3),
    ("raw", "note", None, None),
]

CATALOG: list[Item] = [{"id": i, "price": p} for i, p in enumerate([10, 70, 20, 30])]


def _bodies() -> dict[str, Callable[[Any], list[Any]]]:
    return {
        "fetch": lambda query: [dict(c) for c in CATALOG],
        "expand": lambda query: [{"id": "k1", "why": "title"}, {"id": "k2", "why": "brand"}],
        "keep": lambda items: [c for c in items if c["price"] < 50],
        "rate": lambda items: [{**c, "score": c["price"] / 10} for c in items],
        "order": lambda items: sorted(items, key=lambda c: -c["score"]),
        "note": lambda items: [len(items)],
    }


def _decorator(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    options: dict[str, dict[str, Any]] = {
        "retrieval": {},
        "generation": {"reason": "why"},
        "filtering": {},
        "scoring": {"score": "score"},
        "ranking": {"score": "score"},
        "raw": {},
    }
    factory = getattr(xr, f"{kind}_stage")
    return factory(name, **options[kind])  # type: ignore[no-any-return]


def _make(form: str, body: Callable[[Any], list[Any]]) -> Callable[..., Any]:
    """A function of the given form whose single argument is passed to `body`."""
    if form in ("function", "method"):
        def plain(items: Any) -> list[Any]:
            return body(items)

        if form == "function":
            return plain

        def method(self: Any, items: Any) -> list[Any]:
            return body(items)

        return method
    if form == "async":
        async def coroutine(items: Any) -> list[Any]:
            await asyncio.sleep(0)
            return body(items)

        return coroutine
    if form == "generator":
        def generator(items: Any) -> Iterator[Any]:
            yield from body(items)

        return generator

    async def async_generator(items: Any) -> AsyncIterator[Any]:
        for x in body(items):
            await asyncio.sleep(0)
            yield x

    return async_generator


def _build(form: str) -> dict[str, Callable[[Any], Any]]:
    """The six stages of `KINDS` in `form`, as callables taking one argument."""
    bodies = _bodies()
    stages = {name: _decorator(kind, name)(_make(form, bodies[name])) for kind, name, *_ in KINDS}
    if form != "method":
        return stages
    cls = xr.pipeline("forms-class")(type("Forms", (), stages))
    instance = cls()
    return {name: getattr(instance, name) for name in stages}


async def _collect(value: Any) -> list[Any]:
    if inspect.iscoroutine(value):
        return list(await value)
    if hasattr(value, "__anext__"):
        return [x async for x in value]
    return list(value)


def _drive(stages: dict[str, Callable[[Any], Any]]) -> None:
    async def main() -> None:
        with xr.run("forms", run_id="r1"):
            await _collect(stages["fetch"]("q"))
            await _collect(stages["expand"]("q"))
            kept = await _collect(stages["keep"]([dict(c) for c in CATALOG]))
            rated = await _collect(stages["rate"](kept))
            ordered = await _collect(stages["order"](rated))
            await _collect(stages["note"](ordered))

    asyncio.run(main())


@pytest.mark.parametrize("form", FORMS)
def test_every_stage_kind_is_recorded_with_its_type_name_counts_and_order(
    form: str, captured: Recorded
) -> None:
    _drive(_build(form))

    rows = captured().sql(
        "select name, type, seq, n_in, n_out, status, parent_stage_id, label "
        "from stages where run_id = 'r1' order by seq"
    ).to_dicts()

    assert [(r["type"], r["name"], r["n_in"], r["n_out"]) for r in rows] == KINDS
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["status"] == "success" for r in rows)
    assert all(r["parent_stage_id"] is None for r in rows)
    assert {r["label"] for r in rows} == {"forms"}


@pytest.mark.parametrize("form", FORMS)
def test_stage_outputs_are_recorded_as_candidates_for_every_form(form: str, captured: Recorded) -> None:
    _drive(_build(form))

    rows = captured().sql(
        "select stage_name, candidate_id, out_position, passed, score, reason from candidates "
        "where run_id = 'r1' order by stage_name, in_position nulls first, candidate_id"
    ).to_dicts()
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_stage.setdefault(row["stage_name"], []).append(row)

    assert [r["candidate_id"] for r in by_stage["fetch"]] == ["0", "1", "2", "3"]
    assert [r["reason"] for r in by_stage["expand"]] == ["title", "brand"]
    assert {r["candidate_id"]: r["passed"] for r in by_stage["keep"]} == {
        "0": True, "1": False, "2": True, "3": True,
    }
    assert {r["candidate_id"]: r["score"] for r in by_stage["rate"]} == {
        "0": 1.0, "2": 2.0, "3": 3.0,
    }
    assert {r["candidate_id"]: r["out_position"] for r in by_stage["order"]} == {
        "3": 0, "2": 1, "0": 2,
    }
    assert "note" not in by_stage  # a raw stage records no candidates


@pytest.mark.parametrize("form", ["function", "async", "generator", "async_generator"])
def test_stage_called_outside_any_run_records_a_run_of_its_own_labelled_by_stage_name(
    form: str, captured: Recorded
) -> None:
    stage = xr.filtering_stage("solo-filter")(_make(form, _bodies()["keep"]))

    asyncio.run(_collect(stage([dict(c) for c in CATALOG])))

    db = captured()
    runs = db.sql("select run_id, label, status, n_stages from runs").to_dicts()
    stages = db.sql("select run_id, label, name, n_in, n_out from stages").to_dicts()
    assert len(runs) == 1
    assert runs[0]["label"] == "solo-filter"
    assert runs[0]["status"] == "success"
    assert runs[0]["n_stages"] == 1
    assert stages == [{"run_id": runs[0]["run_id"], "label": "solo-filter",
                       "name": "solo-filter", "n_in": 4, "n_out": 3}]


def test_method_stage_called_outside_a_run_records_a_run_labelled_by_its_pipeline(
    captured: Recorded,
) -> None:
    @xr.pipeline("shop")
    class Shop:
        @xr.ranking_stage("sort")
        def sort(self, items: list[Item]) -> list[Item]:
            return sorted(items, key=lambda c: c["price"])

    Shop().sort([dict(c) for c in CATALOG])
    Shop().sort([dict(c) for c in CATALOG])

    runs = captured().sql("select label, n_stages from runs").to_dicts()
    assert runs == [{"label": "shop", "n_stages": 1}] * 2


def test_each_implicit_run_is_separate_and_gets_a_fresh_run_id(captured: Recorded) -> None:
    @xr.raw_stage
    def step(x: int) -> int:
        return x + 1

    step(1)
    step(2)

    runs = captured().sql("select distinct run_id, label from runs").to_dicts()
    stages = captured().sql("select distinct run_id from stages").to_dicts()
    assert len(runs) == 2
    assert {r["label"] for r in runs} == {"step"}
    assert {r["run_id"] for r in runs} == {s["run_id"] for s in stages}


# --- nesting -----------------------------------------------------------------------------


def test_stage_called_inside_another_stage_records_the_outer_stage_as_parent(
    captured: Recorded,
) -> None:
    @xr.filtering_stage("inner")
    def inner(items: list[Item]) -> list[Item]:
        return items[:1]

    @xr.raw_stage("outer")
    def outer(items: list[Item]) -> int:
        return len(inner(items))

    @xr.raw_stage("after")
    def after() -> None:
        return None

    with xr.run("nest", run_id="n1"):
        outer([dict(c) for c in CATALOG])
        after()

    rows = captured().sql(
        "select name, stage_id, parent_stage_id, seq from stages order by seq"
    ).to_dicts()
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["outer", "inner", "after"]
    assert by_name["inner"]["parent_stage_id"] == by_name["outer"]["stage_id"]
    assert by_name["outer"]["parent_stage_id"] is None
    assert by_name["after"]["parent_stage_id"] is None


def test_async_stages_nested_in_concurrent_tasks_each_get_their_own_parent(captured: Recorded) -> None:
    @xr.raw_stage("leaf")
    async def leaf(tag: str) -> str:
        await asyncio.sleep(0)
        return tag

    @xr.raw_stage("branch")
    async def branch(tag: str) -> str:
        await asyncio.sleep(0)
        return await leaf(tag)

    async def main() -> None:
        with xr.run("tasks", run_id="t1"):
            await asyncio.gather(branch("a"), branch("b"))

    asyncio.run(main())

    rows = captured().sql("select name, stage_id, parent_stage_id, input_json from stages").to_dicts()
    branches = {json.loads(r["input_json"])["tag"]: r["stage_id"]
                for r in rows if r["name"] == "branch"}
    leaves = {json.loads(r["input_json"])["tag"]: r["parent_stage_id"]
              for r in rows if r["name"] == "leaf"}
    assert leaves == branches


def test_stage_called_by_a_generator_body_is_nested_but_one_called_by_its_consumer_is_not(
    captured: Recorded,
) -> None:
    @xr.raw_stage("helper")
    def helper(x: int) -> int:
        return x

    @xr.generation_stage("gen")
    def gen(n: int) -> Iterator[Item]:
        for i in range(n):
            yield {"id": helper(i)}

    @xr.raw_stage("consume")
    def consume(item: Item) -> None:
        return None

    with xr.run("gens", run_id="g1"):
        for item in gen(2):
            consume(item)

    rows = captured().sql("select name, stage_id, parent_stage_id from stages order by seq").to_dicts()
    gen_id = next(r["stage_id"] for r in rows if r["name"] == "gen")
    parents = {(r["name"], r["parent_stage_id"]) for r in rows if r["name"] != "gen"}
    assert parents == {("helper", gen_id), ("consume", None)}


def test_generator_stage_outside_a_run_does_not_capture_stages_its_consumer_calls(
    captured: Recorded,
) -> None:
    @xr.generation_stage("gen")
    def gen(n: int) -> Iterator[Item]:
        yield from ({"id": i} for i in range(n))

    @xr.raw_stage("consume")
    def consume(item: Item) -> None:
        return None

    for item in gen(2):
        consume(item)

    runs = captured().sql("select label, n_stages from runs order by label").to_dicts()
    assert runs == [{"label": "consume", "n_stages": 1}, {"label": "consume", "n_stages": 1},
                    {"label": "gen", "n_stages": 1}]


def test_generator_closed_early_records_what_it_yielded(captured: Recorded) -> None:
    @xr.retrieval_stage("stream")
    def stream() -> Iterator[Item]:
        for i in range(10):
            yield {"id": i}

    with xr.run("early", run_id="e1"):
        g = stream()
        assert [next(g), next(g)] == [{"id": 0}, {"id": 1}]
        g.close()

    row = captured().sql("select status, n_out from stages").to_dicts()
    assert row == [{"status": "success", "n_out": 2}]


def test_generator_return_value_is_passed_through_yield_from(captured: Recorded) -> None:
    @xr.generation_stage("gen")
    def gen() -> Iterator[Item]:
        yield {"id": 1}
        return "done"  # type: ignore[misc]

    def outer() -> Iterator[Item]:
        result = yield from gen()
        assert result == "done"

    assert list(outer()) == [{"id": 1}]


def test_values_sent_into_a_generator_stage_reach_its_body(captured: Recorded) -> None:
    received: list[object] = []

    @xr.generation_stage("echo")
    def echo() -> Any:
        value = yield {"id": 0}
        while value is not None:
            received.append(value)
            value = yield {"id": value}

    g = echo()
    assert next(g) == {"id": 0}
    assert g.send(1) == {"id": 1}
    assert g.send(2) == {"id": 2}
    with pytest.raises(StopIteration):
        g.send(None)
    assert received == [1, 2]
    assert captured().sql("select n_out from stages").item() == 3


# --- pipelines ---------------------------------------------------------------------------


def test_pipeline_class_entrypoint_records_one_run_with_its_id_inputs_and_output(
    captured: Recorded,
) -> None:
    @xr.pipeline("competitor_discovery", id="run_id")
    class Discovery:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

        @xr.entrypoint
        def find(self, product: Item, catalog: list[Item]) -> Item:
            found = self.search(catalog)
            return self.rank(self.filter(found))[0]

        @xr.retrieval_stage("search")
        def search(self, catalog: list[Item]) -> list[Item]:
            return list(catalog)

        @xr.filtering_stage("cheap")
        def filter(self, items: list[Item]) -> list[Item]:
            return [c for c in items if c["price"] < 50]

        @xr.ranking_stage("rank")
        def rank(self, items: list[Item]) -> list[Item]:
            return sorted(items, key=lambda c: c["price"])

    result = Discovery("run-7").find({"title": "shoe"}, CATALOG)
    assert result == {"id": 0, "price": 10}

    db = captured()
    run = db.sql("select * from runs").to_dicts()
    assert len(run) == 1
    r = run[0]
    assert r["run_id"] == "run-7"
    assert r["label"] == "competitor_discovery"
    assert r["status"] == "success"
    assert r["error_message"] is None and r["error_code"] is None
    assert r["n_stages"] == 3
    assert json.loads(r["input_json"]) == {"product": {"title": "shoe"}, "catalog": CATALOG}
    assert json.loads(r["output_json"]) == {"id": 0, "price": 10}
    assert r["duration_ms"] >= 0
    assert r["finished_at"] >= r["started_at"]
    assert r["sdk_version"] == xr.__version__
    assert isinstance(r["host"], str) and r["host"]
    assert len(r["date"]) == 10
    stages = db.sql("select name, run_id, label from stages order by seq").to_dicts()
    assert stages == [{"name": n, "run_id": "run-7", "label": "competitor_discovery"}
                      for n in ("search", "cheap", "rank")]


def test_pipeline_on_a_function_records_each_call_as_a_run_with_its_run_id_parameter(
    captured: Recorded,
) -> None:
    @xr.scoring_stage("score")
    def score(items: list[Item]) -> list[xr.Scored[Item]]:
        return [xr.Scored(c, c["price"]) for c in items]

    @xr.pipeline("fn-pipe", id="request_id")
    def handle(query: str, request_id: str) -> int:
        return len(score([dict(c) for c in CATALOG]))

    assert handle("shoes", "req-1") == 4
    assert handle("boots", request_id="req-2") == 4

    db = captured()
    runs = db.sql("select run_id, label, n_stages, input_json, output_json from runs "
                  "order by run_id").to_dicts()
    assert [(r["run_id"], r["label"], r["n_stages"]) for r in runs] == [
        ("req-1", "fn-pipe", 1), ("req-2", "fn-pipe", 1),
    ]
    assert json.loads(runs[0]["input_json"]) == {"query": "shoes", "request_id": "req-1"}
    assert json.loads(runs[1]["output_json"]) == 4
    assert db.sql("select count(*) from stages where label = 'fn-pipe'").item() == 2


def test_bare_pipeline_on_a_function_uses_its_name_and_a_fresh_run_id(captured: Recorded) -> None:
    @xr.pipeline
    def daily_job(x: int) -> int:
        return x * 2

    assert daily_job(3) == 6
    assert daily_job(4) == 8

    runs = captured().sql("select run_id, label from runs").to_dicts()
    assert {r["label"] for r in runs} == {"daily_job"}
    assert len({r["run_id"] for r in runs}) == 2


def test_async_pipeline_function_and_async_entrypoint_record_runs(captured: Recorded) -> None:
    @xr.raw_stage("work")
    async def work(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @xr.pipeline("async-fn", id="rid")
    async def job(rid: str) -> int:
        return await work(1)

    @xr.pipeline("async-cls", id="rid")
    class Job:
        rid = "cls-1"

        @xr.entrypoint
        async def go(self) -> int:
            return await work(2)

    async def main() -> tuple[int, int]:
        return await job("fn-1"), await Job().go()

    assert asyncio.run(main()) == (1, 2)
    runs = captured().sql("select run_id, label, n_stages from runs order by run_id").to_dicts()
    assert runs == [{"run_id": "cls-1", "label": "async-cls", "n_stages": 1},
                    {"run_id": "fn-1", "label": "async-fn", "n_stages": 1}]


def test_entrypoint_without_a_pipeline_class_is_labelled_by_its_name(captured: Recorded) -> None:
    class Plain:
        @xr.entrypoint
        def serve(self) -> str:
            return "ok"

    assert Plain().serve() == "ok"
    assert captured().sql("select label from runs").item() == "serve"


def test_pipeline_class_is_returned_unchanged_and_still_instantiable() -> None:
    class Original:
        def __init__(self, x: int) -> None:
            self.x = x

    decorated = xr.pipeline("p")(Original)
    assert decorated is Original
    assert Original(3).x == 3


def test_decorated_functions_keep_their_name_doc_and_wrapped() -> None:
    def rank(items: list[Item]) -> list[Item]:
        """Sorts items."""
        return items

    wrapped = xr.ranking_stage(rank)
    assert wrapped.__name__ == "rank"
    assert wrapped.__doc__ == "Sorts items."
    assert wrapped.__wrapped__ is rank  # type: ignore[attr-defined]


def test_nested_entrypoint_call_is_a_run_of_its_own(captured: Recorded) -> None:
    @xr.pipeline("inner-pipe", id="rid")
    def inner(rid: str) -> str:
        return rid

    @xr.pipeline("outer-pipe", id="rid")
    def outer(rid: str) -> str:
        inner(rid + "-inner")
        step()
        return rid

    @xr.raw_stage("step")
    def step() -> None:
        return None

    outer("o")

    runs = captured().sql("select run_id, n_stages from runs order by run_id").to_dicts()
    assert runs == [{"run_id": "o", "n_stages": 1}, {"run_id": "o-inner", "n_stages": 0}]


def test_pipeline_function_run_id_parameter_left_at_its_default_uses_the_default(
    captured: Recorded,
) -> None:
    @xr.pipeline("defaults", id="rid")
    def job(x: int, rid: str = "nightly") -> int:
        return x

    job(1)
    job(2, "manual")

    runs = captured().sql("select run_id from runs order by run_id").to_series().to_list()
    assert runs == ["manual", "nightly"]


def test_pipeline_class_without_its_id_attribute_gets_a_fresh_run_id(captured: Recorded) -> None:
    @xr.pipeline("no-id", id="run_id")
    class NoId:
        @xr.entrypoint
        def go(self) -> int:
            return 1

    assert NoId().go() == 1
    run_id = captured().sql("select run_id from runs").item()
    assert isinstance(run_id, str) and len(run_id) >= 16


def test_runs_in_concurrent_threads_each_keep_their_own_stages(captured: Recorded) -> None:
    from concurrent.futures import ThreadPoolExecutor

    @xr.filtering_stage("half")
    def half(items: list[Item]) -> list[Item]:
        return items[: len(items) // 2]

    @xr.pipeline("threads", id="rid")
    def job(rid: str) -> int:
        return len(half([{"id": f"{rid}-{i}"} for i in range(4)]))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(job, [f"t{i}" for i in range(8)])) == [2] * 8

    db = captured()
    assert db.sql("select count(*), sum(n_stages) from runs").row(0) == (8, 8)
    mixed = db.sql("select count(*) from candidates "
                   "where not starts_with(candidate_id, run_id || '-')").item()
    assert mixed == 0
