"""Generator stages keep the generator protocol (send, throw, close) whether recording or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator

import pytest

import xray_lake as xr
from tests._captured import Captured

Recorded = Callable[[], Captured]


class Stop(Exception):
    pass


@pytest.fixture(params=[True, False])
def enabled(request: pytest.FixtureRequest, captured: Recorded) -> bool:
    """Each test that takes it runs twice: recording, and with recording off."""
    xr.configure(enabled=request.param)  # after `captured` has configured its lake
    return bool(request.param)


def _echo(log: list[object]) -> Generator[dict[str, object], object, None]:
    """Yields back what it is sent, logs it, survives a thrown Stop and logs its own end."""
    try:
        value = yield {"id": 0}
        while True:
            try:
                log.append(value)
                value = yield {"id": value}
            except Stop as exc:
                log.append(f"caught {exc}")
                value = yield {"id": "after-throw"}
    finally:
        log.append("finally")


def _async_echo(log: list[object]) -> Callable[[], AsyncGenerator[dict[str, object], object]]:
    @xr.generation_stage("aecho")
    async def aecho() -> AsyncGenerator[dict[str, object], object]:
        # _echo driven by hand (an async generator has no `yield from`): each value sent or
        # exception thrown in goes on to it, and closing this closes it
        steps = _echo(log)
        sent: object = None
        try:
            while True:
                try:
                    sent = yield steps.send(sent)
                except Stop as exc:
                    sent = yield steps.throw(exc)
        finally:
            steps.close()

    return aecho


def _sync_echo(log: list[object]) -> Callable[[], Generator[dict[str, object], object, None]]:
    @xr.generation_stage("echo")
    def echo() -> Generator[dict[str, object], object, None]:
        yield from _echo(log)

    return echo


def _assert_echoed(got: list[dict[str, object]], log: list[object], enabled: bool,
                   captured: Recorded) -> None:
    assert got == [{"id": 0}, {"id": 1}, {"id": "after-throw"}, {"id": 2}]
    assert log == [1, "caught x", 2, "finally", "closed"]
    if enabled:
        assert captured().sql("select status, n_out from stages").to_dicts() == [
            {"status": "success", "n_out": 4}]


def test_async_generator_stage_forwards_asend_athrow_and_aclose(
    enabled: bool, captured: Recorded
) -> None:
    log: list[object] = []
    aecho = _async_echo(log)

    async def main() -> list[dict[str, object]]:
        agen = aecho()
        got = [await agen.asend(None), await agen.asend(1), await agen.athrow(Stop("x")),
               await agen.asend(2)]
        await agen.aclose()
        log.append("closed")
        return got

    _assert_echoed(asyncio.run(main()), log, enabled, captured)


def test_generator_stage_forwards_send_throw_and_close(enabled: bool, captured: Recorded) -> None:
    log: list[object] = []
    echo = _sync_echo(log)

    gen = echo()
    got = [gen.send(None), gen.send(1), gen.throw(Stop("x")), gen.send(2)]
    gen.close()
    log.append("closed")

    _assert_echoed(got, log, enabled, captured)


def test_async_generator_stage_broken_off_by_the_consumer_runs_its_cleanup_at_once(
    enabled: bool, captured: Recorded
) -> None:
    log: list[object] = []

    @xr.retrieval_stage("aitems")
    async def aitems() -> AsyncGenerator[dict[str, int], None]:
        try:
            for i in range(5):
                yield {"id": i}
        finally:
            log.append("cleanup")

    async def main() -> None:
        agen = aitems()
        async for item in agen:
            if item["id"] == 1:
                break
        await agen.aclose()
        log.append("after")

    asyncio.run(main())
    assert log == ["cleanup", "after"]
    if enabled:
        assert captured().sql("select status, n_out from stages").to_dicts() == [
            {"status": "success", "n_out": 2}]


def test_async_generator_stage_thrown_an_unhandled_exception_records_failure(
    captured: Recorded,
) -> None:
    @xr.retrieval_stage("aitems")
    async def aitems() -> AsyncGenerator[dict[str, int], None]:
        yield {"id": 1}
        yield {"id": 2}

    async def main() -> None:
        agen = aitems()
        await agen.__anext__()
        with pytest.raises(Stop):
            await agen.athrow(Stop("consumer gave up"))

    asyncio.run(main())
    assert captured().sql("select status, error_message from stages").to_dicts() == [
        {"status": "failure", "error_message": "consumer gave up"}]


def test_generator_stage_time_excludes_the_time_its_consumer_spends(captured: Recorded) -> None:
    import time

    @xr.retrieval_stage("fast")
    def fast() -> Generator[dict[str, int], None, None]:
        yield {"id": 1}
        yield {"id": 2}

    for _ in fast():
        time.sleep(0.05)

    assert captured().sql("select duration_ms from stages").item() < 40
