"""Call-time wrappers for sync, async, generator and async-generator functions.

Each wrapper hands the user's own value or exception back untouched: recording happens in
`begin_stage`/`end_stage`, which never raise outside strict mode.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from xray_lake._internal_errors import report
from xray_lake.records.events import StageSpec
from xray_lake.records.values import read_field
from xray_lake.sdk.recording import StageCall, begin_stage, end_stage
from xray_lake.sdk.signature import CallPlan

AnyFunc = Callable[..., Any]


def _label_hint(plan: CallPlan, args: tuple[Any, ...]) -> str | None:
    """Label for a run of its own: the pipeline class's label when called on its instance."""
    if plan.is_method and args:
        owner = args[0] if isinstance(args[0], type) else type(args[0])
        info = getattr(owner, "__xray_pipeline__", None)
        if info is not None:
            return str(info.label)
    return None


def _begin(spec: StageSpec, plan: CallPlan, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> StageCall | None:
    try:
        cands = plan.candidates.get(args, kwargs) if plan.candidates is not None else None
        if plan.input_key is not None and cands is not None:
            cands = read_field(cands, plan.input_key)
        raw = plan.raw_inputs(args, kwargs)
        hint = _label_hint(plan, args)
    except Exception as err:
        report("stage.arguments", err)
        return None
    return begin_stage(spec, hint, cands, raw)  # type: ignore[arg-type]


def _output(plan: CallPlan, result: object) -> object:
    """What the stage returned as candidates: the `output_key` entry of a dict-shaped result
    (the result itself when it lacks one: recorded with the stage's validation_error)."""
    if plan.output_key is None or result is None:
        return result
    try:
        found = read_field(result, plan.output_key)
    except Exception as err:
        report("stage.output_key", err)
        return result
    return result if found is None else found


def wrap_stage(func: AnyFunc, spec: StageSpec, plan: CallPlan) -> AnyFunc:
    if inspect.isasyncgenfunction(func):
        return _wrap_async_gen(func, spec, plan)
    if inspect.isgeneratorfunction(func):
        return _wrap_gen(func, spec, plan)
    if inspect.iscoroutinefunction(func):
        return _wrap_async(func, spec, plan)
    return _wrap_sync(func, spec, plan)


def _wrap_sync(func: AnyFunc, spec: StageSpec, plan: CallPlan) -> AnyFunc:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _begin(spec, plan, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            end_stage(call, None, exc)
            raise
        end_stage(call, _output(plan, result), None)
        return result

    return wrapper


def _wrap_async(func: AnyFunc, spec: StageSpec, plan: CallPlan) -> AnyFunc:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _begin(spec, plan, args, kwargs)
        if call is None:
            return await func(*args, **kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            end_stage(call, None, exc)
            raise
        end_stage(call, _output(plan, result), None)
        return result

    return wrapper


def _wrap_gen(func: AnyFunc, spec: StageSpec, plan: CallPlan) -> AnyFunc:
    """The stage is current only while the generator body runs; its output is what it yielded.

    A consumer that stops early (close(), break) records the items yielded so far as a
    success; an exception from the body records a failure and propagates.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = _begin(spec, plan, args, kwargs)
        gen = func(*args, **kwargs)
        if call is None:
            return (yield from gen)
        call.leave()
        items: list[Any] = []
        timer = _Timer()
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                call.enter()
                timer.start()
                try:
                    if thrown is not None:
                        exc, thrown = thrown, None
                        item = gen.throw(exc)
                    else:
                        item = gen.send(sent)
                finally:
                    timer.stop()
                    call.leave()
                items.append(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    gen.close()
                    end_stage(call, items, None, timer.ms)
                    raise
                except BaseException as exc:
                    thrown, sent = exc, None
        except StopIteration as stop:
            end_stage(call, items, None, timer.ms)
            return stop.value
        except GeneratorExit:
            raise
        except BaseException as exc:
            end_stage(call, None, exc, timer.ms)
            raise

    return wrapper


def _wrap_async_gen(func: AnyFunc, spec: StageSpec, plan: CallPlan) -> AnyFunc:
    """Like `_wrap_gen`; without `yield from`, the send/throw/close protocol is forwarded by hand,
    also when nothing is recorded (`call is None`), so the body sees exactly what it would."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = _begin(spec, plan, args, kwargs)
        agen = func(*args, **kwargs)
        if call is not None:
            call.leave()
        items: list[Any] = []
        timer = _Timer()
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                if call is not None:
                    call.enter()
                timer.start()
                try:
                    if thrown is not None:
                        exc, thrown = thrown, None
                        item = await agen.athrow(exc)
                    else:
                        item = await agen.asend(sent)
                finally:
                    timer.stop()
                    if call is not None:
                        call.leave()
                if call is not None:
                    items.append(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    await agen.aclose()
                    if call is not None:
                        end_stage(call, items, None, timer.ms)
                    raise
                except BaseException as exc:
                    thrown, sent = exc, None
        except StopAsyncIteration:
            if call is not None:
                end_stage(call, items, None, timer.ms)
        except GeneratorExit:
            raise
        except BaseException as exc:
            if call is not None:
                end_stage(call, None, exc, timer.ms)
            raise

    return wrapper


class _Timer:
    """Time spent inside the generator body only, not in the consumer between items."""

    __slots__ = ("_t0", "ms")

    def __init__(self) -> None:
        self.ms = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.ms += (time.perf_counter() - self._t0) * 1000.0
