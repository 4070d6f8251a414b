"""The user's values and exceptions pass through untouched; faults of the SDK never reach user code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import xray_lake as xr
import xray_lake.records.unpack
import xray_lake.sdk.recording
import xray_lake.writer.engine
import xray_lake.writer.intake
from xray_lake.sdk.recording import current_run

Lake = Callable[[], xr.Lake]
Item = dict[str, Any]


class PricingError(Exception):
    code = "E42"


def _items() -> list[Item]:
    return [{"id": i, "price": 10 * i} for i in range(3)]


def _boom(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("internal fault injected by the test")


# --- values and exceptions pass through ------------------------------------------------


def test_sync_stage_returns_the_very_object_its_function_returned(lake: Lake) -> None:
    returned: list[Item] = []

    @xr.filtering_stage("f")
    def f(items: list[Item]) -> list[Item]:
        returned.extend(items[:2])
        return returned

    items = _items()
    assert f(items) is returned
    assert lake().sql("select status from stages").item() == "success"


def test_async_stage_returns_the_very_object_its_coroutine_returned(lake: Lake) -> None:
    returned = [{"id": 1}]

    @xr.scoring_stage("s")
    async def s(items: list[Item]) -> list[Item]:
        return returned

    assert asyncio.run(s(_items())) is returned


def test_generator_stages_yield_the_very_objects_their_bodies_yielded(lake: Lake) -> None:
    items = _items()

    @xr.retrieval_stage("g")
    def g() -> Iterator[Item]:
        yield from items

    @xr.retrieval_stage("ag")
    async def ag() -> AsyncIterator[Item]:
        for x in items:
            yield x

    async def collect() -> list[Item]:
        return [x async for x in ag()]

    assert all(a is b for a, b in zip(list(g()), items, strict=True))
    assert all(a is b for a, b in zip(asyncio.run(collect()), items, strict=True))


def test_pipeline_function_and_entrypoint_return_the_very_result_object(lake: Lake) -> None:
    result = {"answer": 42}

    @xr.pipeline("p")
    def pipe() -> Item:
        return result

    @xr.pipeline("q")
    class Q:
        @xr.entrypoint
        def go(self) -> Item:
            return result

    assert pipe() is result
    assert Q().go() is result


def test_failing_stage_is_recorded_as_failure_and_its_exception_propagates_unchanged(
    lake: Lake,
) -> None:
    error = PricingError("price service down")

    @xr.scoring_stage("price")
    def price(items: list[Item]) -> list[Item]:
        raise error

    @xr.pipeline("shop", id="rid")
    def shop(rid: str) -> list[Item]:
        return price(_items())

    with pytest.raises(PricingError) as caught:
        shop("r1")
    assert caught.value is error

    db = lake()
    stage = db.sql("select status, error_message, error_code, n_in from stages").to_dicts()
    assert stage == [{"status": "failure", "error_message": "price service down",
                      "error_code": "PricingError:E42", "n_in": 3}]
    run = db.sql("select status, error_message, error_code, output_json from runs").to_dicts()
    assert run == [{"status": "failure", "error_message": "price service down",
                    "error_code": "PricingError:E42", "output_json": None}]


def test_exception_without_message_or_code_is_recorded_by_its_type_name(lake: Lake) -> None:
    @xr.raw_stage
    def broken() -> None:
        raise ValueError

    with pytest.raises(ValueError):
        broken()

    row = lake().sql("select status, error_message, error_code from stages").to_dicts()
    assert row == [{"status": "failure", "error_message": "ValueError",
                    "error_code": "ValueError"}]


def test_async_failing_stage_propagates_and_is_recorded(lake: Lake) -> None:
    error = PricingError("async down")

    @xr.filtering_stage("af")
    async def af(items: list[Item]) -> list[Item]:
        await asyncio.sleep(0)
        raise error

    with pytest.raises(PricingError) as caught:
        asyncio.run(af(_items()))
    assert caught.value is error
    assert lake().sql("select status, error_code from stages").to_dicts() == [
        {"status": "failure", "error_code": "PricingError:E42"}]


def test_generator_stage_raising_midway_is_recorded_as_failure(lake: Lake) -> None:
    error = PricingError("stream broke")

    @xr.retrieval_stage("stream")
    def stream() -> Iterator[Item]:
        yield {"id": 1}
        raise error

    got: list[Item] = []
    with pytest.raises(PricingError) as caught:
        for item in stream():
            got.append(item)
    assert caught.value is error
    assert got == [{"id": 1}]
    assert lake().sql("select status, error_message from stages").to_dicts() == [
        {"status": "failure", "error_message": "stream broke"}]


def test_exception_thrown_into_a_generator_stage_reaches_its_body(lake: Lake) -> None:
    seen: list[BaseException] = []

    @xr.generation_stage("gen")
    def gen() -> Iterator[Item]:
        try:
            yield {"id": 1}
        except PricingError as exc:
            seen.append(exc)
            yield {"id": "recovered"}

    g = gen()
    next(g)
    error = PricingError("thrown in")
    assert g.throw(error) == {"id": "recovered"}
    assert seen == [error]
    with pytest.raises(StopIteration):
        next(g)
    assert lake().sql("select status, n_out from stages").to_dicts() == [
        {"status": "success", "n_out": 2}]


def test_async_generator_stage_raising_is_recorded_and_propagates(lake: Lake) -> None:
    error = PricingError("async stream broke")

    @xr.retrieval_stage("astream")
    async def astream() -> AsyncIterator[Item]:
        yield {"id": 1}
        raise error

    async def consume() -> None:
        async for _ in astream():
            pass

    with pytest.raises(PricingError) as caught:
        asyncio.run(consume())
    assert caught.value is error
    assert lake().sql("select status from stages").item() == "failure"


def test_keyboard_interrupt_in_a_stage_is_recorded_and_reraised(lake: Lake) -> None:
    interrupt = KeyboardInterrupt()

    @xr.raw_stage("slow")
    def slow() -> None:
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as caught, xr.run("ki", run_id="k1"):
        slow()
    assert caught.value is interrupt

    db = lake()
    assert db.sql("select status, error_code from stages").to_dicts() == [
        {"status": "failure", "error_code": "KeyboardInterrupt"}]
    assert db.sql("select status from runs").item() == "failure"


def test_cancelled_async_stage_is_recorded_and_the_cancellation_propagates(lake: Lake) -> None:
    started = asyncio.Event()

    @xr.raw_stage("waits")
    async def waits() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.ensure_future(waits())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert lake().sql("select status, error_code from stages").to_dicts() == [
        {"status": "failure", "error_code": "CancelledError"}]


def test_generator_exit_from_a_cancelled_consumer_is_not_a_failure(lake: Lake) -> None:
    @xr.retrieval_stage("g")
    def g() -> Iterator[Item]:
        yield {"id": 1}
        yield {"id": 2}

    gen = g()
    next(gen)
    del gen

    assert lake().sql("select status, n_out from stages").to_dicts() == [
        {"status": "success", "n_out": 1}]


# --- faults inside the SDK never reach user code ------------------------------------------


def _stage_forms() -> dict[str, Callable[[list[Item]], list[Item]]]:
    """One scoring stage per kind of callable, each driven synchronously to its list."""

    @xr.scoring_stage("sync")
    def sync(items: list[Item]) -> list[Item]:
        return [{**c, "score": 1.0} for c in items]

    @xr.scoring_stage("coro")
    async def coro(items: list[Item]) -> list[Item]:
        return [{**c, "score": 1.0} for c in items]

    @xr.scoring_stage("gen")
    def gen(items: list[Item]) -> Iterator[Item]:
        for c in items:
            yield {**c, "score": 1.0}

    @xr.scoring_stage("agen")
    async def agen(items: list[Item]) -> AsyncIterator[Item]:
        for c in items:
            yield {**c, "score": 1.0}

    async def collect(it: AsyncIterator[Item]) -> list[Item]:
        return [x async for x in it]

    return {
        "sync": sync,
        "coro": lambda items: asyncio.run(coro(items)),
        "gen": lambda items: list(gen(items)),
        "agen": lambda items: asyncio.run(collect(agen(items))),
    }


FAULTS = {
    "pack": (xray_lake.sdk.recording, "pack", "stage.end"),
    "new_stage_id": (xray_lake.sdk.recording, "new_stage_id", "stage.begin"),
    "submit": (xray_lake.writer.engine.Writer, "submit", "stage.end"),
}


@pytest.mark.parametrize("form", ["sync", "coro", "gen", "agen"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_sdk_fault_on_the_callers_thread_never_reaches_user_code_and_is_counted(
    form: str, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    xr.configure(strict=False)
    target, attr, where = FAULTS[fault]
    stage = _stage_forms()[form]
    monkeypatch.setattr(target, attr, _boom)

    assert stage(_items()) == [{**c, "score": 1.0} for c in _items()]

    assert xr.stats()["internal_errors"].get(where, 0) >= 1
    assert current_run() is None


def test_fallback_snapshot_fault_never_reaches_user_code_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    xr.configure(strict=False)
    monkeypatch.setattr(xray_lake.sdk.recording, "pack", lambda items: None)  # unencodable
    monkeypatch.setattr(xray_lake.sdk.recording, "snapshot", _boom)
    stage = _stage_forms()["sync"]

    assert stage(_items()) == [{**c, "score": 1.0} for c in _items()]

    assert xr.stats()["internal_errors"].get("stage.end", 0) >= 1


def test_sdk_fault_never_replaces_the_users_own_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    xr.configure(strict=False)
    monkeypatch.setattr(xray_lake.writer.engine.Writer, "submit", _boom)
    error = PricingError("user's own")

    @xr.pipeline("p")
    def pipe() -> None:
        stage()

    @xr.raw_stage
    def stage() -> None:
        raise error

    with pytest.raises(PricingError) as caught:
        pipe()
    assert caught.value is error
    internal = xr.stats()["internal_errors"]
    assert internal["stage.end"] == 1
    assert internal["run.end"] == 1


def test_fault_when_a_stage_begins_leaves_no_stale_run_behind(
    monkeypatch: pytest.MonkeyPatch, lake: Lake
) -> None:
    xr.configure(strict=False)

    @xr.raw_stage("step")
    def step() -> int:
        return 1

    with monkeypatch.context() as patch:
        patch.setattr(xray_lake.sdk.recording, "new_stage_id", _boom)
        assert step() == 1
    assert current_run() is None
    assert step() == 1

    assert lake().sql("select label, n_stages from runs").to_dicts() == [
        {"label": "step", "n_stages": 1}]


@pytest.mark.parametrize(
    ("target", "attr"),
    [(xray_lake.writer.intake, "build_stage"), (xray_lake.records.unpack, "unpack")],
)
def test_fault_while_encoding_on_the_writer_thread_is_counted_and_flush_says_so(
    target: object, attr: str, monkeypatch: pytest.MonkeyPatch, isolated_lake: str
) -> None:
    xr.configure(strict=False)
    monkeypatch.setattr(target, attr, _boom)

    @xr.filtering_stage("f")
    def f(items: list[Item]) -> list[Item]:
        return items[:1]

    items = _items()
    result = f(items)
    assert result == items[:1]

    assert xr.flush(5) is False
    stats = xr.stats()
    assert stats["internal_errors"]["writer.encode"] == 1
    assert stats["dead_lettered"] == 1 + len(items)  # set aside, not lost (test_dead_letters)
    assert stats["dropped_total"] == 0
    assert stats["runs_recorded"] == 1  # the run itself is still written
    assert xr.Lake(isolated_lake).sql("select count(*) from stages").item() == 0


def test_fault_while_encoding_a_run_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    xr.configure(strict=False)
    monkeypatch.setattr(xray_lake.writer.intake, "build_run", _boom)

    @xr.pipeline("p")
    def pipe() -> int:
        return 1

    assert pipe() == 1
    assert xr.flush(5) is False
    assert xr.stats()["internal_errors"]["writer.encode"] == 1


def test_strict_mode_reraises_sdk_faults_so_tests_fail_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(xray_lake.sdk.recording, "pack", _boom)

    @xr.scoring_stage("s")
    def s(items: list[Item]) -> list[Item]:
        return items

    with pytest.raises(RuntimeError, match="internal fault injected"):
        s(_items())
    assert current_run() is None


def test_unserialisable_arguments_and_results_are_recorded_not_fatal(lake: Lake) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    loop: list[object] = []
    loop.append(loop)

    @xr.raw_stage("odd")
    def odd(a: object, b: object) -> object:
        return {"nan": float("nan"), "obj": Opaque()}

    odd(Opaque(), loop)

    row = lake().sql("select status, input_json, output_json from stages").to_dicts()[0]
    assert row["status"] == "success"
    assert row["input_json"] is not None and row["output_json"] is not None
    json.loads(row["output_json"])


def test_disabled_recording_calls_the_function_and_writes_nothing() -> None:
    xr.configure(enabled=False)

    @xr.filtering_stage("f")
    def f(items: list[Item]) -> list[Item]:
        return items[:1]

    @xr.pipeline("p")
    def pipe() -> int:
        return len(f(_items()))

    assert pipe() == 1
    assert xr.flush(5) is True
    stats = xr.stats()
    assert (stats["runs_recorded"], stats["stages_recorded"]) == (0, 0)
