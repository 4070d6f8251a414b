"""`@pipeline` and `@entrypoint`: each call of the decorated function, or of a pipeline
class's entrypoint method, is one run labelled by its pipeline."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from xray_lake._internal_errors import report
from xray_lake.errors import DecorationError
from xray_lake.sdk import inventory
from xray_lake.sdk.recording import RunState, begin_run, end_run
from xray_lake.sdk.signature import check_plain, fail, plan_call
from xray_lake.sdk.wrappers import PipelineInfo, wrap_call

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])  # a class or a function


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


def _wrap_run(func: Callable[..., Any], info: PipelineInfo | None) -> Callable[..., Any]:
    """Each call of `func` is one run: label and run id from the pipeline, inputs and result kept."""
    plan = plan_call(func, None, None)
    signature = inspect.signature(func)
    params = list(signature.parameters)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty}

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RunState | None:
        try:
            # An entrypoint runs under its class's pipeline: the lookup of wrappers.pipeline_of,
            # inlined to spare each run a call.
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

    return wrap_call(func, begin, end_run)


def entrypoint(func: Callable[P, R], /) -> Callable[P, R]:
    """Marks the method whose each call is one run of the enclosing `@pipeline` class."""
    check_plain(func, "xr.entrypoint")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise fail(func, "an entrypoint cannot be a generator",
                   "return a list from the entrypoint, or make the generator a stage")
    wrapped = _wrap_run(func, None)
    inventory.add(inventory.of("entrypoint", func.__name__, func))
    return wrapped


@overload
def pipeline(target: F, /) -> F: ...
@overload
def pipeline(label: str, /, *, id: str | None = None) -> Callable[[R], R]: ...
def pipeline(label: Any, /, *, id: str | None = None) -> Any:
    """Names a pipeline: on a class (its `@entrypoint` methods start runs) or on a function
    (each call is a run). `label` names its runs in the lake; `id` names the attribute (class)
    or parameter (function) holding the run id; without it each run gets a random one.

    Examples
    --------
    >>> @xr.pipeline("shop", id="request_id")
    ... def shop(query, request_id): return query.split()
    >>> with capture_records() as records: words = shop("red shoes", request_id="r-1")
    >>> records.runs.select("run_id", "label", "status").row(0)
    ('r-1', 'shop', 'success')
    """

    def decorate(target: Any) -> Any:
        name = label if isinstance(label, str) else target.__name__
        info = PipelineInfo(name, id)
        if inspect.isclass(target):
            setattr(target, "__xray_pipeline__", info)  # noqa: B010 - read back by entrypoints
            inventory.add(inventory.of("pipeline", name, target, "class"))
            return target
        if callable(target):
            if id is not None and id not in inspect.signature(target).parameters:
                raise fail(target, f"id={id!r} names no parameter",
                           "pass id= the parameter that holds the run id, or drop it")
            wrapped = _wrap_run(target, info)
            wrapped.__xray_pipeline__ = info  # type: ignore[attr-defined]
            inventory.add(inventory.of("pipeline", name, target, "function"))
            return wrapped
        raise DecorationError(f"@pipeline decorates a class or a function, got {target!r}")

    if isinstance(label, str):
        return decorate
    return decorate(label)
