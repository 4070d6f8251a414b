"""Decoration-time analysis of a stage function: which parameter holds candidates, what to capture.

Everything derivable from the signature is computed once here, so a call only indexes into
`args`; every mistake visible here raises DecorationError naming the function and the fix.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import types
import typing
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xray_lake.errors import DecorationError
from xray_lake.records.events import INPUT_LIST_TYPES, LIST_TYPES, FieldMap
from xray_lake.records.results import HELPER_OF, RESULT_HELPERS
from xray_lake.sdk.markers import Candidates, RawInput

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class ParamRef:
    """Where a parameter's value is found in a call: positional index and/or keyword name."""

    name: str
    index: int | None
    default: object
    kind: inspect._ParameterKind

    def get(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        if self.kind is inspect.Parameter.VAR_POSITIONAL:
            return args[self.index:] if self.index is not None else ()
        if self.kind is inspect.Parameter.VAR_KEYWORD:
            return kwargs
        if self.index is not None and self.index < len(args):
            return args[self.index]
        if self.name in kwargs:
            return kwargs[self.name]
        return None if self.default is _EMPTY else self.default


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What a wrapper needs at call time."""

    qualname: str
    where: str
    is_method: bool
    candidates: ParamRef | None
    captured: tuple[tuple[str, ParamRef], ...]  # (name in input_json, parameter)
    # dict-shaped stages: the key (or dotted path) of the candidate list in the argument
    # and in the result (`input_key="documents"` for a component taking {"documents": [...]})
    input_key: str | None = None
    output_key: str | None = None

    def raw_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, object] | None:
        if not self.captured:
            return None
        return {name: ref.get(args, kwargs) for name, ref in self.captured}


def location(func: Callable[..., Any]) -> tuple[str, str]:
    """(qualified name, 'file:line') for error messages."""
    qualname = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    code = getattr(inspect.unwrap(func), "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else "<unknown>"
    return qualname, where


def fail(func: Callable[..., Any], problem: str, fix: str) -> DecorationError:
    qualname, where = location(func)
    return DecorationError(f"{problem} in {qualname} ({where}). Fix: {fix}")


def check_plain(func: object, decorator: str) -> None:
    """Reject `@classmethod`/`@staticmethod` applied under an xray-lake decorator, naming the fix."""
    if isinstance(func, classmethod | staticmethod):
        kind = type(func).__name__
        raise fail(func.__func__, f"@{decorator} is applied to a {kind} object",
                   f"put @{kind} above @{decorator}, so that @{decorator} sees the function")


def _markers(func: Callable[..., Any], name: str, annotation: object) -> list[object]:
    """The metadata of an `Annotated[...]` annotation, even when annotations are strings."""
    if isinstance(annotation, str):
        return _string_markers(func, annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return list(getattr(annotation, "__metadata__", ()))
    return []


def _string_markers(func: Callable[..., Any], text: str) -> list[object]:
    """Evaluate only the metadata of a stringified `Annotated[T, marker]` (T may be undefined yet)."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return []
    if not isinstance(node, ast.Subscript):
        return []
    base = node.value
    base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
    if base_name != "Annotated" or not isinstance(node.slice, ast.Tuple):
        return []
    namespace = dict(getattr(func, "__globals__", {}))
    found: list[object] = []
    for element in node.slice.elts[1:]:
        try:
            found.append(eval(compile(ast.Expression(element), "<annotation>", "eval"), namespace))
        except Exception:
            continue
    return found


def _element_type(annotation: object) -> object:
    """X for list[X] / Sequence[X] / Annotated[list[X], ...]; None when unknown."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    return args[0] if len(args) == 1 else None


def _known_fields(element: object) -> list[str] | None:
    if not isinstance(element, type):
        return None
    if dataclasses.is_dataclass(element):
        return [f.name for f in dataclasses.fields(element)]
    model_fields = getattr(element, "model_fields", None)
    if isinstance(model_fields, dict):
        return list(model_fields)
    if hasattr(element, "__total__") and hasattr(element, "__annotations__"):
        return list(element.__annotations__)
    return None


def _field_type(element: type, name: str) -> object:
    """The declared type of field `name` of a dataclass, pydantic model or TypedDict."""
    model_fields = getattr(element, "model_fields", None)
    if isinstance(model_fields, dict) and name in model_fields:
        return getattr(model_fields[name], "annotation", None)
    try:
        return typing.get_type_hints(element).get(name)
    except Exception:
        return None


def _path_problem(element: object, path: str) -> tuple[str, list[str]] | None:
    """For a dotted path whose first part is a field of `element`: (the first later part that
    names nothing, the fields it was looked for in), as far as the types on the way declare
    their fields; None when the path may hold (a dict, Any, a list: anything may be there)."""
    parts = path.split(".")
    current = element
    for before, part in itertools.pairwise(parts):
        current = _field_type(current, before) if isinstance(current, type) else None
        if typing.get_origin(current) is typing.Annotated:
            current = typing.get_args(current)[0]
        if isinstance(current, types.UnionType) or typing.get_origin(current) is typing.Union:
            others = [a for a in typing.get_args(current) if a is not type(None)]
            current = others[0] if len(others) == 1 else None  # Optional[X] is X
        known = _known_fields(current)
        if known is None:
            return None
        if part not in known:
            return part, known
    return None


def check_fields(func: Callable[..., Any], fields: FieldMap, *elements: object,
                 extra: tuple[tuple[str, str], ...] = ()) -> None:
    """When the candidate types (input and output) declare their fields, every mapping must
    name a field of one of them; an undeclared type (dict, Any) can hold anything. `extra`:
    a custom stage type's (field, key) mappings."""
    declared = [_known_fields(e) for e in elements if e is not None]
    if not declared or any(k is None for k in declared):
        return
    known = list(dict.fromkeys(name for k in declared if k for name in k))
    element = next(e for e in elements if e is not None)
    named = [*fields.named().items(),
             *((f"fields[{p.name!r}]", p.source) for p in fields.promoted), *extra]
    for role, field_name in named:
        if field_name in known or (role == "id" and field_name == "id"):
            continue  # the default id mapping is only a guess; absent ids are reported per run
        head = field_name.split(".")[0]
        if "." in field_name and head in known:  # a path: check the parts the types declare
            owner = next((e for e in elements if head in (_known_fields(e) or ())), element)
            bad = _path_problem(owner, field_name)
            if bad is None:
                continue
            part, inner = bad
            raise fail(func, f"{role}={field_name!r}: {part!r} names no field of the type "
                             f"of the path before it (fields: {', '.join(inner)})",
                       f"pass {role}= a path whose every part is a field, e.g. "
                       f"{field_name.rsplit('.', 1)[0]}.{inner[0] if inner else 'name'}")
        close = difflib.get_close_matches(field_name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise fail(
            func,
            f"{role}={field_name!r} names no field of {getattr(element, '__name__', element)} "
            f"(fields: {', '.join(known)})",
            f"{hint}pass {role}= one of those fields",
        )


_HELPER_STAGES = {"Filtered": "filtering", "Scored": "scoring or ranking",
                  "Generated": "generation or retrieval"}


def _type_name(annotation: object) -> str:
    if annotation is type(None) or annotation is None:
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "").replace("collections.abc.", "")


def _may_be_list(annotation: object) -> bool:
    """False only for a return type that surely is no list or tuple (dict, str, None, a model)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_may_be_list(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type) or origin in (object, Any):
        return True  # Any, a TypeVar, a Literal...: nothing to say
    return issubclass(origin, list | tuple) or origin in (abc.Sequence, abc.MutableSequence)


def _items(annotation: object) -> list[object]:
    """The item types a list (tuple, iterator...) annotation names, through unions."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [x for a in typing.get_args(annotation) for x in _items(a)]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        return [a for a in args if a is not Ellipsis]
    return list(args[:1])


def check_result(func: Callable[..., Any], stage_type: str, type_name: str,
                 annotation: object) -> None:
    """A list stage's return annotation must name a list or tuple (a generator: anything it
    yields), holding candidates or the result helper of its own stage type."""
    if stage_type not in LIST_TYPES or annotation is _EMPTY or isinstance(annotation, str):
        return
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    body = inspect.unwrap(func)
    if not (inspect.isgeneratorfunction(body) or inspect.isasyncgenfunction(body)
            or _may_be_list(annotation)):
        raise fail(func, f"a {type_name} stage returns its candidates as a list, but the return "
                         f"type is {_type_name(annotation)}",
                   "return a list (or tuple) of candidates, or record other values with "
                   "@xr.raw_stage")
    own = HELPER_OF[stage_type]
    for item in _items(annotation):
        helper = typing.get_origin(item) or item
        if helper in RESULT_HELPERS and helper is not own:
            name = getattr(helper, "__name__", "?")
            raise fail(func, f"a {type_name} stage returns xr.{name}, the result of "
                             f"{_HELPER_STAGES[name]} stages",
                       f"return xr.{own.__name__}(item, ...) or plain candidates from a "
                       f"{type_name} stage, or make it a {_HELPER_STAGES[name]} stage")


def plan_call(func: Callable[..., Any], stage_type: str | None, fields: FieldMap | None,
              capture_all: bool = True, *, type_fields: tuple[tuple[str, str], ...] = (),
              type_name: str | None = None, input_key: str | None = None,
              output_key: str | None = None, candidates_param: str | None = None) -> CallPlan:
    """Analyse `func` once; raises DecorationError for anything that cannot work.

    `type_fields` are a custom stage type's own (field, key) mappings, checked like `fields`;
    `type_name` is the type the user wrote, for messages (`stage_type` is how it records);
    `input_key` / `output_key` name the candidate list inside a dict argument / result;
    `candidates_param` names the candidate parameter (instead of an xr.Candidates() marker)."""
    qualname, where = location(func)
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise fail(func, f"cannot read the signature ({exc})", "decorate a plain function") from None
    params = list(sig.parameters.values())
    is_method = bool(params) and params[0].name in {"self", "cls"}
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:
        hints = {}
    refs: list[tuple[inspect.Parameter, ParamRef]] = []
    for i, p in enumerate(params):
        positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        refs.append((p, ParamRef(p.name, i if positional else None, p.default, p.kind)))
    user_refs = refs[1:] if is_method else refs

    candidates: ParamRef | None = None
    candidates_annotation: object = None
    raw: list[tuple[str, ParamRef]] = []
    for p, ref in user_refs:
        annotation = hints.get(p.name, p.annotation)
        for marker in _markers(func, p.name, annotation):
            if isinstance(marker, type) and marker in (Candidates, RawInput):
                raise fail(func, f"{marker.__name__} is used without parentheses on {p.name!r}",
                           f"write {marker.__name__}() / {marker.__name__}('name')")
            if isinstance(marker, Candidates):
                if candidates is not None:
                    raise fail(func, f"two candidate lists ({candidates.name!r} and {p.name!r})",
                               "mark exactly one parameter with xr.Candidates()")
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    raise fail(func, f"xr.Candidates() on *{p.name}",
                               "mark a single list parameter instead")
                candidates, candidates_annotation = ref, annotation
            elif isinstance(marker, RawInput):
                if any(name == marker.name for name, _ in raw):
                    raise fail(func, f"two parameters captured as RawInput({marker.name!r})",
                               "give each RawInput a distinct name")
                raw.append((marker.name, ref))

    if candidates_param is not None:
        named = [(p, ref) for p, ref in user_refs if p.name == candidates_param]
        if not named:
            names = ", ".join(p.name for p, _ in user_refs) or "none"
            raise fail(func, f"candidates={candidates_param!r} names no parameter "
                             f"(parameters: {names})",
                       "pass candidates= the name of the parameter holding the candidate list")
        if candidates is not None and candidates.name != candidates_param:
            raise fail(func, f"two candidate lists ({candidates.name!r} marked, "
                             f"{candidates_param!r} named by candidates=)",
                       "keep one: the xr.Candidates() marker or candidates=")
        candidates = named[0][1]
        candidates_annotation = hints.get(candidates_param, named[0][0].annotation)
    if stage_type in INPUT_LIST_TYPES and candidates is None:
        plain = [(p, ref) for p, ref in user_refs
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if len(plain) == 1:
            candidates = plain[0][1]
            candidates_annotation = hints.get(plain[0][0].name, plain[0][0].annotation)
        else:
            names = ", ".join(p.name for p, _ in plain) or "none"
            raise fail(
                func,
                f"a {stage_type} stage needs its candidate list, but no parameter is marked "
                f"(parameters: {names})",
                "annotate the list parameter as `Annotated[list[...], xr.Candidates()]`, or "
                "name it with candidates='...' where annotations must stay plain (Haystack)",
            )
    _check_keys(func, stage_type, type_name or stage_type, candidates, input_key, output_key)
    if fields is not None:  # the element types are unknown inside a dict argument or result
        returned = (None if output_key is not None
                    else _element_type(hints.get("return", sig.return_annotation)))
        given = (_element_type(candidates_annotation)
                 if stage_type in INPUT_LIST_TYPES and candidates_annotation is not None
                 and input_key is None else None)
        check_fields(func, fields, returned, given, extra=type_fields)
    if stage_type is not None and output_key is None:
        check_result(func, stage_type, type_name or stage_type,
                     hints.get("return", sig.return_annotation))

    if raw:
        captured = tuple(raw)
    elif capture_all:
        captured = tuple((ref.name, ref) for _, ref in user_refs
                         if candidates is None or ref.name != candidates.name)
    else:
        captured = ()
    return CallPlan(qualname, where, is_method, candidates, captured, input_key, output_key)


def _check_keys(func: Callable[..., Any], stage_type: str | None, type_name: str | None,
                candidates: ParamRef | None, input_key: str | None,
                output_key: str | None) -> None:
    """`input_key=` needs a candidate parameter to look in; `output_key=` a stage that
    returns its result (a generator yields candidates one by one); neither fits a raw stage."""
    if input_key is None and output_key is None:
        return
    given = "input_key=" if input_key is not None else "output_key="
    if stage_type is None or stage_type not in LIST_TYPES:
        raise fail(func, f"{given} applies to stages with candidates, not a "
                         f"{type_name or 'raw'} stage", f"drop {given}")
    if input_key is not None and candidates is None:
        raise fail(func, f"input_key={input_key!r} names the candidate list inside an argument, "
                         f"but no parameter of this {type_name} stage is marked as candidates",
                   "annotate the dict parameter as `Annotated[dict, xr.Candidates()]`, or drop "
                   "input_key=")
    body = inspect.unwrap(func)
    if output_key is not None and (inspect.isgeneratorfunction(body)
                                   or inspect.isasyncgenfunction(body)):
        raise fail(func, f"output_key={output_key!r} on a generator, which yields its "
                         "candidates one by one",
                   "drop output_key= (each yielded item is a candidate), or return the dict")
