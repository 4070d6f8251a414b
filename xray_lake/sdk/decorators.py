"""The stage decorators, one per stage type, typed to keep the decorated function's signature.

The list-stage decorators also bound the return type (see records/results.py): a type checker
rejects a function that returns no sequence, or another stage type's result helper.
`pipeline` and `entrypoint` are in sdk/pipelines.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, overload

from xray_lake.errors import DecorationError
from xray_lake.records.events import FieldMap, StageSpec
from xray_lake.records.options import Caps, Sample, mapping_problems, resolve
from xray_lake.records.promoted import Field, resolve_fields
from xray_lake.records.results import FilteringResult, GenerationResult, ScoringResult
from xray_lake.sdk import inventory
from xray_lake.sdk.signature import check_plain, fail, plan_call
from xray_lake.sdk.wrappers import wrap_stage

__all__ = ["Decorator", "Fields", "FilteringDecorator", "GenerationDecorator", "ScoringDecorator",
           "decorate_stage", "filtering_stage", "generation_stage", "ranking_stage", "raw_stage",
           "retrieval_stage", "scoring_stage"]

P = ParamSpec("P")
R = TypeVar("R")
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
