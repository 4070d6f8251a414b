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


def _async_echo(log: list[object]) -> Callable[[], AsyncGenerator[dict[str, object], object]]:
    @xr.generation_stage("aecho")
    async def aecho() -> AsyncGenerator[dict[str, object], object]:
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

    return aecho


def _sync_echo(log: list[object]) -> Callable[[], Generator[dict[str, object], object, None]]:
    @xr.generation_stage("echo")
    def echo() -> Generator[dict[str, object], object, None]:
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

    return echo


@pytest.mark.parametrize("enabled", [True, False])
def test_async_generator_stage_forwards_asend_athrow_and_aclose(
    enabled: bool, captured: Recorded
) -> None:
    xr.configure(enabled=enabled)
    log: list[object] = []
    aecho = _async_echo(log)

    async def main() -> list[object]:
        agen = aecho()
        got = [await agen.asend(None), await agen.asend(1), await agen.athrow(Stop("x")),
               await agen.asend(2)]
        await agen.aclose()
        log.append("closed")
        return got

    got = asyncio.run(main())
    assert got == [{"id": 0}, {"id": 1}, {"id": "after-throw"}, {"id": 2}]
    assert log == [1, "caught x", 2, "finally", "closed"]
    if enabled:
        assert captured().sql("select status, n_out from stages").to_dicts() == [
            {"status": "success", "n_out": 4}]


@pytest.mark.parametrize("enabled", [True, False])
def test_generator_stage_forwards_send_throw_and_close(enabled: bool, captured: Recorded) -> None:
    xr.configure(enabled=enabled)
    log: list[object] = []
    echo = _sync_echo(log)

    gen = echo()
    got = [gen.send(None), gen.send(1), gen.throw(Stop("x")), gen.send(2)]
    gen.close()
    log.append("closed")

    assert got == [{"id": 0}, {"id": 1}, {"id": "after-throw"}, {"id": 2}]
    assert log == [1, "caught x", 2, "finally", "closed"]
    if enabled:
        assert captured().sql("select status, n_out from stages").to_dicts() == [
            {"status": "success", "n_out": 4}]


@pytest.mark.parametrize("enabled", [True, False])
def test_async_generator_stage_broken_off_by_the_consumer_runs_its_cleanup_at_once(
    enabled: bool, captured: Recorded
) -> None:
    xr.configure(enabled=enabled)
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
