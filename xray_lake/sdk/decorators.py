"""The public decorators: `pipeline`, `entrypoint` and one per stage type, typed to keep signatures.

The list-stage decorators also bound the return type (see records/results.py): a type checker
rejects a function that returns no sequence, or another stage type's result helper.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, overload

from xray_lake._internal_errors import report
from xray_lake.errors import DecorationError
from xray_lake.records.events import FieldMap, StageSpec
from xray_lake.records.options import Caps, Sample, mapping_problems, resolve
from xray_lake.records.promoted import Field, resolve_fields
from xray_lake.records.results import FilteringResult, GenerationResult, ScoringResult
from xray_lake.sdk import inventory
from xray_lake.sdk.recording import begin_run, end_run
from xray_lake.sdk.signature import check_plain, fail, plan_call
from xray_lake.sdk.wrappers import wrap_stage

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])  # a class or a function
# fields=: promoted column name -> candidate field name, or xr.Field(name, type)
Fields: TypeAlias = Mapping[str, str | Field]
RF = TypeVar("RF", bound=FilteringResult)
RS = TypeVar("RS", bound=ScoringResult)
RG = TypeVar("RG", bound=GenerationResult)


class Decorator(Protocol):
    """What a configured decorator returns: the same callable type it was given."""

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


class FilteringDecorator(Protocol):
    """A configured `filtering_stage`: for functions returning candidates or `xr.Filtered`."""

    def __call__(self, func: Callable[P, RF], /) -> Callable[P, RF]: ...


class ScoringDecorator(Protocol):
    """A configured `scoring_stage` / `ranking_stage`: candidates or `xr.Scored`."""

    def __call__(self, func: Callable[P, RS], /) -> Callable[P, RS]: ...


class GenerationDecorator(Protocol):
    """A configured `generation_stage` / `retrieval_stage`: candidates or `xr.Generated`."""

    def __call__(self, func: Callable[P, RG], /) -> Callable[P, RG]: ...


def decorate_stage(func: Callable[..., Any], spec: StageSpec, decorator: str, *,
                   input_key: str | None = None, output_key: str | None = None,
                   candidates: str | None = None) -> Callable[..., Any]:
    """Wrap `func` as the stage `spec` (its name defaults to the function's); everything
    visible in the signature is checked here, raising DecorationError with the fix.

    `input_key` / `output_key`: the candidate list is that key (or dotted path) of the
    candidate argument / of the returned value, for stages that take or return dicts;
    `candidates` names the candidate parameter where annotations must stay plain (Haystack
    matches its components' sockets by their annotations)."""
    check_plain(func, decorator)
    if not callable(func):
        raise DecorationError(f"@{decorator} decorates a function, got {type(func).__name__}")
    name = spec.name or func.__name__
    if not name.strip():
        raise fail(func, "the stage name is empty", f"@{decorator}('a-name')")
    plan = plan_call(func, spec.type, spec.fields if spec.type != "raw" else None,
                     type_fields=spec.type_fields, type_name=spec.recorded_type,
                     input_key=input_key, output_key=output_key, candidates_param=candidates)
    spec = dataclasses.replace(spec, name=name, qualname=plan.qualname)
    wrapper = wrap_stage(func, spec, plan)
    wrapper.__xray_stage__ = spec  # type: ignore[attr-defined]
    inventory.add_stage(spec, func, plan.where)
    return wrapper


def _stage(stage_type: str, name_or_func: str | Callable[..., Any] | None,
           fields: FieldMap, sample: Sample | None = None, caps: Caps | None = None,
           promoted: object = None,
           keys: tuple[str | None, str | None, str | None] = (None, None, None),
           **shorthand: int | None) -> Any:
    decorator = f"xr.{stage_type}_stage"

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        scale_sample, scale_caps, problems = resolve(stage_type, sample, caps, **shorthand)
        columns, more = resolve_fields(promoted)  # fields=: promoted columns
        problems += more
        problems += mapping_problems({**{role: getattr(fields, role) for role in
                                         ("id", "passed", "reason_label", "reason_text",
                                          "score", "reason")},
                                      "input_key": keys[0], "output_key": keys[1],
                                      "candidates": keys[2]})
        if problems:
            check_plain(func, decorator)
            raise fail(func, *problems[0])
        name = name_or_func if isinstance(name_or_func, str) else ""
        field_map = dataclasses.replace(fields, promoted=columns) if columns else fields
        spec = StageSpec(name, stage_type, field_map, None, scale_sample, scale_caps)
        return decorate_stage(func, spec, decorator, input_key=keys[0], output_key=keys[1],
                              candidates=keys[2])

    if callable(name_or_func):
        return decorate(name_or_func)
    return decorate


@overload
def retrieval_stage(func: Callable[P, RG], /) -> Callable[P, RG]: ...
@overload
def retrieval_stage(name: str | None = None, /, *, id: str = "id", score: str | None = None,
                    sample: Sample | None = None, caps: Caps | None = None,
                    fields: Fields | None = None, input_key: str | None = None,
                    output_key: None = None,
                    candidates: str | None = None) -> GenerationDecorator: ...
@overload  # the candidates are inside the returned dict: any return type
def retrieval_stage(name: str | None = None, /, *, id: str = "id", score: str | None = None,
                    sample: Sample | None = None, caps: Caps | None = None,
                    fields: Fields | None = None, input_key: str | None = None,
                    output_key: str,
                    candidates: str | None = None) -> Decorator: ...
def retrieval_stage(name: Any = None, /, *, id: str = "id", score: str | None = None,
                    sample: Sample | None = None, caps: Caps | None = None,
                    fields: Fields | None = None, input_key: str | None = None,
                    output_key: str | None = None, candidates: str | None = None) -> Any:
    """A stage that returns candidates (search, lookup): records each with its id, and its
    retrieval score when `score=` names it (BM25, vector similarity); see `filtering_stage`.

    Examples
    --------
    >>> @xr.retrieval_stage("search", score="bm25")
    ... def search(query): return [{"id": "a", "bm25": 2.5}, {"id": "b", "bm25": 1.0}]
    >>> with capture_records() as records: found = search("red shoes")
    >>> records.stage("search")["score_max"]
    2.5
    """
    return _stage("retrieval", name, FieldMap(id=id, score=score), sample, caps, fields,
                  (input_key, output_key, candidates))


@overload
def scoring_stage(func: Callable[P, RS], /) -> Callable[P, RS]: ...
@overload
def scoring_stage(name: str | None = None, /, *, id: str = "id", score: str | None = "score",
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None, fields: Fields | None = None,
                  input_key: str | None = None,
                  output_key: None = None,
                  candidates: str | None = None) -> ScoringDecorator: ...
@overload  # the candidates are inside the returned dict: any return type
def scoring_stage(name: str | None = None, /, *, id: str = "id", score: str | None = "score",
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None, fields: Fields | None = None,
                  input_key: str | None = None,
                  output_key: str,
                  candidates: str | None = None) -> Decorator: ...
def scoring_stage(name: Any = None, /, *, id: str = "id", score: str | None = "score",
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None, fields: Fields | None = None,
                  input_key: str | None = None, output_key: str | None = None,
                  candidates: str | None = None) -> Any:
    """A stage that scores its candidates; return dicts with `score` or `xr.Scored(item, s)`.

    `score` names the field holding the score; `sample=xr.Sample(top=100, max_rest=N)` stores
    the 100 best-scored rows and at most N others (by id hash; `max_out_of_top=N` is its
    deprecated spelling, warned at decoration); see `filtering_stage` for the rest.

    Examples
    --------
    >>> @xr.scoring_stage("relevance")
    ... def relevance(items): return [dict(i, score=len(i["title"])) for i in items]
    >>> with capture_records() as records: scored = relevance([{"id": "a", "title": "boots"}])
    >>> records.stage("relevance")["score_max"]
    5.0
    """
    return _stage("scoring", name, FieldMap(id=id, score=score), sample, caps, fields,
                  (input_key, output_key, candidates), max_out_of_top=max_out_of_top)


@overload
def filtering_stage(func: Callable[P, RF], /) -> Callable[P, RF]: ...
@overload
def filtering_stage(name: str | None = None, /, *, id: str = "id", passed: str | None = None,
                    reason_label: str | None = None, reason_text: str | None = None,
                    sample: Sample | None = None, max_failed: int | None = None,
                    caps: Caps | None = None, fields: Fields | None = None,
                    input_key: str | None = None,
                    output_key: None = None,
                    candidates: str | None = None) -> FilteringDecorator: ...
@overload  # the candidates are inside the returned dict: any return type
def filtering_stage(name: str | None = None, /, *, id: str = "id", passed: str | None = None,
                    reason_label: str | None = None, reason_text: str | None = None,
                    sample: Sample | None = None, max_failed: int | None = None,
                    caps: Caps | None = None, fields: Fields | None = None,
                    input_key: str | None = None,
                    output_key: str,
                    candidates: str | None = None) -> Decorator: ...
def filtering_stage(name: Any = None, /, *, id: str = "id", passed: str | None = None,
                    reason_label: str | None = None, reason_text: str | None = None,
                    sample: Sample | None = None, max_failed: int | None = None,
                    caps: Caps | None = None, fields: Fields | None = None,
                    input_key: str | None = None, output_key: str | None = None,
                  candidates: str | None = None) -> Any:
    """A stage that keeps some candidates: return all with a pass flag, or only the survivors.

    Parameters
    ----------
    name, id
        The stage's name in the lake (default: the function's); the field holding an id.
    passed, reason_label, reason_text
        Fields holding a candidate's pass flag (without it, the returned candidates are the
        survivors) and why it failed: a label (counted per stage) and free text.
    sample, max_failed, caps
        Which rows are stored (`xr.Sample(max_failed=N)`: every passed row and at most N
        failed ones; `max_failed=N` alone is deprecated) and size caps (`xr.Caps`).
    fields, input_key, output_key
        Typed columns `f_<name>` from candidate fields (`{"price": "price"}`); where the
        candidate list is in a dict the stage takes or returns (`"hits"`).

    Examples
    --------
    >>> @xr.filtering_stage("in_stock", passed="ok", reason_label="why")
    ... def in_stock(items): return [dict(i, ok=i["stock"] > 0) for i in items]
    >>> with capture_records() as records:
    ...     kept = in_stock([{"id": "a", "stock": 2}, {"id": "b", "stock": 0, "why": "sold out"}])
    >>> records.stage("in_stock")["fail_ratio"]
    0.5
    """
    return _stage("filtering", name, FieldMap(id=id, passed=passed, reason_label=reason_label,
                                              reason_text=reason_text), sample, caps, fields,
                  (input_key, output_key, candidates), max_failed=max_failed)


@overload
def generation_stage(func: Callable[P, RG], /) -> Callable[P, RG]: ...
@overload
def generation_stage(name: str | None = None, /, *, id: str = "id", reason: str | None = None,
                     sample: Sample | None = None, caps: Caps | None = None,
                     fields: Fields | None = None, input_key: str | None = None,
                     output_key: None = None,
                    candidates: str | None = None) -> GenerationDecorator: ...
@overload  # the candidates are inside the returned dict: any return type
def generation_stage(name: str | None = None, /, *, id: str = "id", reason: str | None = None,
                     sample: Sample | None = None, caps: Caps | None = None,
                     fields: Fields | None = None, input_key: str | None = None,
                     output_key: str,
                    candidates: str | None = None) -> Decorator: ...
def generation_stage(name: Any = None, /, *, id: str = "id", reason: str | None = None,
                     sample: Sample | None = None, caps: Caps | None = None,
                     fields: Fields | None = None, input_key: str | None = None,
                     output_key: str | None = None, candidates: str | None = None) -> Any:
    """A stage that produces candidates (keywords, LLM outputs), each with its `reason=` field.

    Examples
    --------
    >>> @xr.generation_stage("keywords", reason="why")
    ... def keywords(query): return [{"id": "shoes", "why": "noun in the query"}]
    >>> with capture_records() as records: words = keywords("red shoes")
    >>> records.candidates["reason"].to_list()
    ['noun in the query']
    """
    return _stage("generation", name, FieldMap(id=id, reason=reason), sample, caps, fields,
                  (input_key, output_key, candidates))


@overload
def ranking_stage(func: Callable[P, RS], /) -> Callable[P, RS]: ...
@overload
def ranking_stage(name: str | None = None, /, *, id: str = "id", score: str | None = None,
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None, fields: Fields | None = None,
                  input_key: str | None = None,
                  output_key: None = None,
                  candidates: str | None = None) -> ScoringDecorator: ...
@overload  # the candidates are inside the returned dict: any return type
def ranking_stage(name: str | None = None, /, *, id: str = "id", score: str | None = None,
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None, fields: Fields | None = None,
                  input_key: str | None = None,
                  output_key: str,
                  candidates: str | None = None) -> Decorator: ...
def ranking_stage(name: Any = None, /, *, id: str = "id", score: str | None = None,
                  sample: Sample | None = None, max_out_of_top: int | None = None,
                  caps: Caps | None = None, fields: Fields | None = None,
                  input_key: str | None = None, output_key: str | None = None,
                  candidates: str | None = None) -> Any:
    """A stage that reorders its candidates; metrics compare input and output order.

    `sample=xr.Sample(top=100, max_rest=N)` stores the first 100 rows and at most N others.

    Examples
    --------
    >>> @xr.ranking_stage("by_price")
    ... def by_price(items): return sorted(items, key=lambda i: i["price"])
    >>> with capture_records() as records: out = by_price([{"id": "a", "price": 3}, {"id": "b", "price": 1}])
    >>> records.stage("by_price")["rank_kendall_tau"]  # the order reversed
    -1.0
    """
    return _stage("ranking", name, FieldMap(id=id, score=score), sample, caps, fields,
                  (input_key, output_key, candidates), max_out_of_top=max_out_of_top)


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
    wrapped = _wrap_entry(func, None)
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
            wrapped = _wrap_entry(target, info)
            wrapped.__xray_pipeline__ = info  # type: ignore[attr-defined]
            inventory.add(inventory.of("pipeline", name, target, "function"))
            return wrapped
        raise DecorationError(f"@pipeline decorates a class or a function, got {target!r}")

    if isinstance(label, str):
        return decorate
    return decorate(label)
