"""The public decorators: `pipeline`, `entrypoint` and one per stage type, typed to keep signatures."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from xray_lake._guard import report
from xray_lake.errors import DecorationError
from xray_lake.records.events import STAGE_TYPES, FieldMap, StageSpec
from xray_lake.records.options import Caps, Sample, resolve
from xray_lake.sdk._current import begin_run, end_run
from xray_lake.sdk.signature import check_plain, fail, plan_call
from xray_lake.sdk.wrappers import wrap_stage

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])  # a class or a function


class Decorator(Protocol):
    """What a configured decorator returns: the same callable type it was given."""

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


def _stage(stage_type: str, name_or_func: str | Callable[..., Any] | None,
           fields: FieldMap, sample: Sample | None = None, caps: Caps | None = None,
           **shorthand: int | None) -> Any:
    if stage_type not in STAGE_TYPES:
        raise DecorationError(f"unknown stage type {stage_type!r}; use one of {STAGE_TYPES}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        check_plain(func, f"xr.{stage_type}_stage")
        if not callable(func):
            raise DecorationError(
                f"@{stage_type}_stage decorates a function, got {type(func).__name__}"
            )
        name = name_or_func if isinstance(name_or_func, str) else func.__name__
        if not name.strip():
            raise fail(func, "the stage name is empty", f"@xr.{stage_type}_stage('a-name')")
        plan = plan_call(func, stage_type, fields if stage_type != "raw" else None)
        scale_sample, scale_caps, problems = resolve(stage_type, sample, caps, **shorthand)
        if problems:
            raise fail(func, *problems[0])
        spec = StageSpec(name, stage_type, fields, plan.qualname, scale_sample, scale_caps)
        wrapper = wrap_stage(func, spec, plan)
        wrapper.__xray_stage__ = spec  # type: ignore[attr-defined]
        return wrapper

    if callable(name_or_func):
        return decorate(name_or_func)
    return decorate


@overload
def retrieval_stage(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def retrieval_stage(name: str | None = None, /, *, id: str = "id", sample: Sample | None = None,
                    caps: Caps | None = None) -> Decorator: ...
def retrieval_stage(name: Any = None, /, *, id: str = "id", sample: Sample | None = None,
                    caps: Caps | None = None) -> Any:
    """A stage that returns candidates (search, lookup): records each with its id."""
    return _stage("retrieval", name, FieldMap(id=id), sample, caps)


@overload
def scoring_stage(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def scoring_stage(name: str | None = None, /, *, id: str = "id", score: str | None = "score",
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None) -> Decorator: ...
def scoring_stage(name: Any = None, /, *, id: str = "id", score: str | None = "score",
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None) -> Any:
    """A stage that scores its candidates; return dicts with `score` or `xr.Scored(item, s)`.

    `max_out_of_top=N` stores the 100 best-scored rows and at most N others (by id hash)."""
    return _stage("scoring", name, FieldMap(id=id, score=score), sample, caps,
                  max_out_of_top=max_out_of_top)


@overload
def filtering_stage(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def filtering_stage(name: str | None = None, /, *, id: str = "id", passed: str | None = None,
                    reason_label: str | None = None, reason_text: str | None = None,
                    sample: Sample | None = None, max_failed: int | None = None,
                    caps: Caps | None = None) -> Decorator: ...
def filtering_stage(name: Any = None, /, *, id: str = "id", passed: str | None = None,
                    reason_label: str | None = None, reason_text: str | None = None,
                    sample: Sample | None = None, max_failed: int | None = None,
                    caps: Caps | None = None) -> Any:
    """A stage that keeps some candidates: return all with a pass flag, or only the survivors.

    `max_failed=N` stores every passed row and at most N failed ones (by id hash)."""
    return _stage("filtering", name, FieldMap(id=id, passed=passed, reason_label=reason_label,
                                              reason_text=reason_text), sample, caps,
                  max_failed=max_failed)


@overload
def generation_stage(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def generation_stage(name: str | None = None, /, *, id: str = "id", reason: str | None = None,
                     sample: Sample | None = None, caps: Caps | None = None) -> Decorator: ...
def generation_stage(name: Any = None, /, *, id: str = "id", reason: str | None = None,
                     sample: Sample | None = None, caps: Caps | None = None) -> Any:
    """A stage that produces candidates (keywords, filters, LLM outputs), each with a reason."""
    return _stage("generation", name, FieldMap(id=id, reason=reason), sample, caps)


@overload
def ranking_stage(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def ranking_stage(name: str | None = None, /, *, id: str = "id", score: str | None = None,
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None) -> Decorator: ...
def ranking_stage(name: Any = None, /, *, id: str = "id", score: str | None = None,
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None) -> Any:
    """A stage that reorders its candidates; metrics compare input and output order.

    `max_out_of_top=N` stores the first 100 rows and at most N others (by id hash)."""
    return _stage("ranking", name, FieldMap(id=id, score=score), sample, caps,
                  max_out_of_top=max_out_of_top)


@overload
def raw_stage(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def raw_stage(name: str | None = None, /, *, caps: Caps | None = None) -> Decorator: ...
def raw_stage(name: Any = None, /, *, caps: Caps | None = None) -> Any:
    """Any step: records its arguments and return value, nothing more."""
    return _stage("raw", name, FieldMap(id=None), None, caps)


# --- pipelines and entrypoints ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    label: str
    id: str | None


def _run_id(info: PipelineInfo | None, args: tuple[Any, ...], kwargs: dict[str, Any],
            params: list[str], defaults: dict[str, object]) -> str | None:
    if info is None or info.id is None:
        return None
    if args and params and params[0] in {"self", "cls"}:
        value = getattr(args[0], info.id, None)
    elif info.id in kwargs:
        value = kwargs[info.id]
    elif info.id in params and params.index(info.id) < len(args):
        value = args[params.index(info.id)]
    else:
        value = defaults.get(info.id)
    return None if value is None else str(value)


def _wrap_entry(func: Callable[..., Any], info: PipelineInfo | None) -> Callable[..., Any]:
    """Each call of `func` is one run: label and run id from the pipeline, inputs and result kept."""
    plan = plan_call(func, None, None)
    signature = inspect.signature(func)
    params = list(signature.parameters)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty}

    def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            owner_info = info
            if owner_info is None and plan.is_method and args:
                owner = args[0] if isinstance(args[0], type) else type(args[0])
                owner_info = getattr(owner, "__xray_pipeline__", None)
            label = owner_info.label if owner_info else func.__name__
            return begin_run(label, _run_id(owner_info, args, kwargs, params, defaults),
                             input=plan.raw_inputs(args, kwargs))
        except Exception as err:
            report("run.begin", err)
            return None

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_entry(*args: Any, **kwargs: Any) -> Any:
            run = start(args, kwargs)
            if run is None:
                return await func(*args, **kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                end_run(run, exc)
                raise
            end_run(run, None, result)
            return result

        return async_entry

    @functools.wraps(func)
    def entry(*args: Any, **kwargs: Any) -> Any:
        run = start(args, kwargs)
        if run is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            end_run(run, exc)
            raise
        end_run(run, None, result)
        return result

    return entry


def entrypoint(func: Callable[P, R], /) -> Callable[P, R]:
    """Marks the method whose each call is one run of the enclosing `@pipeline` class."""
    check_plain(func, "xr.entrypoint")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise fail(func, "an entrypoint cannot be a generator",
                   "return a list from the entrypoint, or make the generator a stage")
    return _wrap_entry(func, None)


@overload
def pipeline(target: F, /) -> F: ...
@overload
def pipeline(label: str, /, *, id: str | None = None) -> Callable[[R], R]: ...
def pipeline(label: Any, /, *, id: str | None = None) -> Any:
    """Names a pipeline: on a class (its `@entrypoint` methods start runs) or on a function
    (each call is a run). `id` names the attribute (class) or parameter (function) holding the
    run id; without it each run gets a random one."""

    def decorate(target: Any) -> Any:
        name = label if isinstance(label, str) else target.__name__
        info = PipelineInfo(name, id)
        if inspect.isclass(target):
            setattr(target, "__xray_pipeline__", info)  # noqa: B010 - read back by entrypoints
            return target
        if callable(target):
            if id is not None and id not in inspect.signature(target).parameters:
                raise fail(target, f"id={id!r} names no parameter",
                           "pass id= the parameter that holds the run id, or drop it")
            wrapped = _wrap_entry(target, info)
            wrapped.__xray_pipeline__ = info  # type: ignore[attr-defined]
            return wrapped
        raise DecorationError(f"@pipeline decorates a class or a function, got {target!r}")

    if isinstance(label, str):
        return decorate
    return decorate(label)
