"""Call-time wrappers: one for sync and async functions (stages and runs alike), and the
stages' generator and async-generator wrappers.

Each wrapper hands the user's own value or exception back untouched: recording happens in
the begin and finish functions it is given (`begin_stage`/`end_stage`, `begin_run`/`end_run`
underneath), which never raise outside strict mode.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from xray_lake._internal_errors import report
from xray_lake.records.events import StageSpec
from xray_lake.records.values import read_field
from xray_lake.sdk.recording import StageCall, begin_stage, end_stage
from xray_lake.sdk.signature import CallPlan

AnyFunc = Callable[..., Any]
T = TypeVar("T")
# begin(args, kwargs) -> what finish needs, or None to record nothing (off, or it failed)
Begin: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], T | None]
# finish(what begin returned, the result or None, the exception or None)
Finish: TypeAlias = Callable[[T, Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    """What `@pipeline` leaves on a class or function as `__xray_pipeline__`: its runs' label,
    and the attribute (class) or parameter (function) holding the run id."""

    label: str
    id: str | None


def pipeline_of(plan: CallPlan, args: tuple[Any, ...]) -> PipelineInfo | None:
    """The `@pipeline` of the class a method is called on, through an instance or the class."""
    if plan.is_method and args:
        owner = args[0] if isinstance(args[0], type) else type(args[0])
        info: PipelineInfo | None = getattr(owner, "__xray_pipeline__", None)
        return info
    return None


def wrap_call(func: AnyFunc, begin: Begin[T], finish: Finish[T]) -> AnyFunc:
    """`func`, sync or async, with each call recorded: `begin(args, kwargs)` before the body
    (None: nothing is recorded), then `finish(what_begin_returned, result, exception)`.

    The two bodies differ only by `await`, which no shared helper could hold without a
    call more per call on the user's hot path."""
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            began = begin(args, kwargs)
            if began is None:
                return await func(*args, **kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                finish(began, None, exc)
                raise
            finish(began, result, None)
            return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = begin(args, kwargs)
        if began is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            finish(began, None, exc)
            raise
        finish(began, result, None)
        return result

    return wrapper


def wrap_stage(func: AnyFunc, spec: StageSpec, plan: CallPlan) -> AnyFunc:
    begin = _stage_begin(spec, plan)
    if inspect.isasyncgenfunction(func):
        return _wrap_async_gen(func, begin)
    if inspect.isgeneratorfunction(func):
        return _wrap_gen(func, begin)
    return wrap_call(func, begin, _stage_finish(plan))


def _stage_begin(spec: StageSpec, plan: CallPlan) -> Begin[StageCall]:
    """Begins a call of the stage: its candidates (at `input_key`), the arguments it captures,
    and the label of a run of its own (the pipeline class's, when called on its instance)."""

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> StageCall | None:
        try:
            cands = plan.candidates.get(args, kwargs) if plan.candidates is not None else None
            if plan.input_key is not None and cands is not None:
                cands = read_field(cands, plan.input_key)
            raw = plan.raw_inputs(args, kwargs)
            info = pipeline_of(plan, args)
            hint = None if info is None else str(info.label)
        except Exception as err:
            report("stage.arguments", err)
            return None
        return begin_stage(spec, hint, cands, raw)  # type: ignore[arg-type]

    return begin


def _stage_finish(plan: CallPlan) -> Finish[StageCall]:
    """`end_stage`, given the `output_key` entry of a dict-shaped result as the candidates
    (the result itself when it lacks one: recorded with the stage's validation_error)."""
    key = plan.output_key
    if key is None:
        return end_stage

    def finish(call: StageCall, result: object, exc: BaseException | None) -> None:
        if result is not None:
            try:
                found = read_field(result, key)
            except Exception as err:
                report("stage.output_key", err)
            else:
                result = result if found is None else found
        end_stage(call, result, exc)

    return finish


def _wrap_gen(func: AnyFunc, begin: Begin[StageCall]) -> AnyFunc:
    """The stage is current only while the generator body runs; its output is what it yielded.

    A consumer that stops early (close(), break) records the items yielded so far as a
    success; an exception from the body records a failure and propagates.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = begin(args, kwargs)
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


def _wrap_async_gen(func: AnyFunc, begin: Begin[StageCall]) -> AnyFunc:
    """Like `_wrap_gen`; without `yield from`, the send/throw/close protocol is forwarded by hand,
    also when nothing is recorded (`call is None`), so the body sees exactly what it would."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = begin(args, kwargs)
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
