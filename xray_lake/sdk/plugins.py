"""The public plugin API: `xr.metric`, `xr.register_metric`, `xr.register_stage_type`.

Every misuse visible at registration (unknown stage type, a function that cannot take the
two arguments, a metric name already taken, a type name colliding with another) raises
DecorationError there, at import time, with where it is and how to fix it. The registry and
the running of plugins live in records/plugin_registry.py, below the writer that runs them.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from xray_lake.errors import DecorationError
from xray_lake.records import plugin_registry as registry
from xray_lake.records.events import ROLES, STAGE_TYPES
from xray_lake.records.plugin_registry import DEFAULT_BUDGET_MS, NAME, StageTypeDef
from xray_lake.sdk.signature import fail, location

MetricFunc = Callable[[Any, Mapping[str, Any]], object]
"""A plugin: (candidate columns as a polars DataFrame or Arrow Table, the stage row) ->
a number, None, or a mapping name -> number."""
M = TypeVar("M", bound=MetricFunc)


def call_site() -> str:
    """'file:line' of the nearest caller outside xray_lake's sdk: where the user wrote the
    call, for errors raised before any function is known (`@xr.stage(...)`)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and str(frame.f_globals.get("__name__")).startswith(
            "xray_lake.sdk"):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def stage_type_fields(custom: StageTypeDef | None, type_fields: object,
                      roles: Mapping[str, str | None]
                      ) -> tuple[dict[str, str], tuple[tuple[str, str], ...], list[tuple[str, str]]]:
    """A stage's view of its type's own fields: (role -> key for the roles the type fills,
    (field, key) for every field, [(problem, fix)]). `roles` are the role mappings the stage
    was given (passed=, score=, ...): a role the type fills may not be given too."""
    if custom is None:
        if type_fields:
            return {}, (), [("type_fields= applies to registered stage types only",
                             "drop it; built-in types map fields with passed=, score=, ...")]
        return {}, (), []
    given = type_fields or {}
    if not isinstance(given, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in given.items()):
        return {}, (), [(f"type_fields={type_fields!r} is not a mapping field -> candidate key",
                         'pass type_fields={"verdict": "decision"}')]
    names = [f for f, _ in custom.fields]
    for key in given:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            return {}, (), [(f"type_fields names {key!r}, not a field of stage type "
                             f"{custom.name!r} (fields: {', '.join(names) or 'none'})",
                             f"{hint}map one of those fields")]
    keys = {f: given.get(f, f) for f in names}
    mapped: dict[str, str] = {}
    for field, role in custom.fields:
        if role is None:
            continue
        if roles.get(role) is not None:
            return {}, (), [(f"{role}= is filled by stage type {custom.name!r} from its field "
                             f"{field!r}", f"drop {role}=; to read {field!r} from another key, "
                             f"pass type_fields={{{field!r}: 'key'}}")]
        mapped[role] = keys[field]
    return mapped, tuple(keys.items()), []


def unknown_type(type_name: object, what: str, where: str) -> DecorationError:
    """'unknown stage type' with the nearest known name and the two ways to fix it."""
    known = registry.known_types()
    near = difflib.get_close_matches(str(type_name), known, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return DecorationError(
        f"unknown stage type {type_name!r} for {what} ({where}). Fix: {hint}use one of "
        f"{', '.join(known)}, or register it first with "
        f"xr.register_stage_type({str(type_name)!r}, base=...)")


def resolve_type(type_name: object, what: str, where: Callable[[], str]) -> StageTypeDef | None:
    """None for a built-in type, the definition of a registered one; DecorationError (after
    loading packaged plugins, which may register it) for anything else."""
    if type_name in STAGE_TYPES:
        return None
    if isinstance(type_name, str):
        definition = registry.stage_type(type_name)
        if definition is None:  # packaged plugins may register it (waits at most 10 s for
            registry.load_entry_points(timeout=10)  # another thread loading them)
            definition = registry.stage_type(type_name)
        if definition is not None:
            return definition
    raise unknown_type(type_name, what, where())


def metric(stage_type: str, /, *, name: str | None = None, fields: Sequence[str] = (),
           frame: Literal["polars", "arrow"] = "polars",
           budget_ms: float | None = DEFAULT_BUDGET_MS) -> Callable[[M], M]:
    """Register the decorated function as a metric plugin of `stage_type`; returns it unchanged.

    ```python
    @xr.metric("filtering", name="price_p90_of_failed", fields=["price"])
    def price_p90(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float | None:
        return candidates.filter(~pl.col("passed"))["price"].quantile(0.9)
    ```
    The function gets the stage's candidate rows (all of them, before sampling) as a polars
    DataFrame (`frame="arrow"`: a pyarrow Table) with the columns candidate_id, in_position,
    out_position, passed, reason_label, reason_text, score, reason, the custom type's own
    fields and the candidate `fields` asked for; and the stage row, read-only. A number is
    stored as `metrics[name]` (name defaults to the function's), a mapping as
    `metrics["name.key"]`, None stores nothing. It runs on the writer thread; calls slower than
    `budget_ms` are logged once and counted.
    """

    def decorate(func: M) -> M:
        _register(stage_type, func, name, fields, frame, budget_ms)
        return func

    return decorate


def register_metric(stage_type: str, func: MetricFunc, /, *, name: str | None = None,
                    fields: Sequence[str] = (), frame: Literal["polars", "arrow"] = "polars",
                    budget_ms: float | None = DEFAULT_BUDGET_MS) -> None:
    """`xr.metric(...)(func)` without the decorator syntax."""
    _register(stage_type, func, name, fields, frame, budget_ms)


def _register(stage_type: object, func: Callable[..., object], name: str | None,
              fields: Sequence[str], frame: object, budget_ms: object) -> None:
    if not callable(func):
        raise DecorationError(f"a metric plugin is a function, got {func!r} ({call_site()}). "
                              "Fix: pass a function (candidates, stage) -> number")
    qualname, where = location(func)
    metric_name = name if name is not None else getattr(func, "__name__", "")
    resolve_type(stage_type, f"metric plugin {qualname}", lambda: where)
    if not isinstance(metric_name, str) or not NAME.match(metric_name):
        raise fail(func, f"metric name {metric_name!r} is not a name (letters, digits, _; "
                         "queried as $metrics.<name>)", "pass name='a_name'")
    if isinstance(fields, str) or not all(isinstance(f, str) and f for f in fields):
        raise fail(func, f"fields={fields!r} is not a list of candidate field names",
                   "pass fields=['price', ...]")
    if frame not in ("polars", "arrow"):
        raise fail(func, f"frame={frame!r} is neither 'polars' nor 'arrow'",
                   "pass frame='polars' (a polars DataFrame) or frame='arrow' (a pyarrow Table)")
    if budget_ms is not None and (isinstance(budget_ms, bool) or not isinstance(
            budget_ms, int | float) or budget_ms <= 0):
        raise fail(func, f"budget_ms={budget_ms!r} is not a positive number",
                   "pass budget_ms=100 (milliseconds per call), or None for no budget")
    _check_arity(func)
    plugin = registry.MetricPlugin(str(stage_type), metric_name, func, tuple(fields),
                                   frame, budget_ms, qualname, where)
    problem = registry.add_plugin(plugin)
    if problem is not None:
        raise fail(func, *problem)
    func.__xray_metric__ = plugin  # type: ignore[attr-defined]


def _check_arity(func: Callable[..., object]) -> None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return  # a builtin or C function: trust it
    try:
        sig.bind(None, None)
    except TypeError:
        params = ", ".join(sig.parameters) or "none"
        raise fail(func, f"a metric plugin is called with two arguments (candidates, stage), "
                         f"but its parameters are ({params})",
                   "define it as def plugin(candidates, stage) -> float") from None
    if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func):
        raise fail(func, "a metric plugin must return its value, not a coroutine or generator",
                   "make it a plain def returning a number")


def register_stage_type(name: str, /, *, base: str,
                        candidate_fields: Mapping[str, str | None] | Sequence[str] = (),
                        required: Sequence[str] = (), metrics: Sequence[MetricFunc] = (),
                        description: str | None = None) -> StageTypeDef:
    """A new stage type, recorded like the built-in `base` type under its own name.

    ```python
    xr.register_stage_type(
        "llm_judge", base="filtering",
        candidate_fields={"verdict": "reason_label", "rationale": "reason_text",
                          "confidence": None},
        required=["verdict"], metrics=[reject_share])
    ```
    `candidate_fields` are the type's own candidate fields, each mapped to the column of
    `base` it fills (`passed`, `reason_label`, `reason_text` for filtering; `score` for
    scoring and ranking; `reason` for generation) or None (kept in the payload and given to
    metric plugins as a column). A stage reads each from the candidate key of the same name
    unless it says otherwise (`type_fields={"verdict": "decision"}`). `required` fields
    missing from candidates are reported in the stage's `validation_error`. `metrics` are
    plugins registered for the type (named after each function).
    Registering the same definition again is allowed; another one under a taken name is not.
    """
    where = call_site()

    def error(problem: str, fix: str) -> DecorationError:
        return DecorationError(f"{problem} in xr.register_stage_type({name!r}) ({where}). "
                               f"Fix: {fix}")

    if not isinstance(name, str) or not NAME.match(name):
        raise error(f"stage type name {name!r} is not a name (letters, digits, _)",
                    "pass a name such as 'llm_judge'")
    if base not in STAGE_TYPES:
        near = difflib.get_close_matches(str(base), STAGE_TYPES, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise error(f"base={base!r} is not a built-in stage type",
                    f"{hint}pass base= one of {', '.join(STAGE_TYPES)}")
    items = (list(candidate_fields.items()) if isinstance(candidate_fields, Mapping)
             else [(f, None) for f in candidate_fields])
    roles = ROLES[base]
    taken: dict[str, str] = {}
    for field, role in items:
        if not isinstance(field, str) or not NAME.match(field) or field == "id":
            raise error(f"candidate field {field!r} is not a name (or is 'id', which every "
                        "stage maps with id=)", "name fields with letters, digits and _")
        if role is not None and role not in roles:
            allowed = ", ".join(roles) or "none (map fields to None)"
            raise error(f"candidate_fields[{field!r}] = {role!r} is not a column a {base} stage "
                        f"fills (those are: {allowed})",
                        f"map {field!r} to one of them, or to None to keep it as a plugin column")
        if role is not None and role in taken:
            raise error(f"fields {taken[role]!r} and {field!r} both fill {role!r}",
                        "map each column from one field")
        if role is not None:
            taken[role] = field
    if base == "raw" and items:
        raise error("a raw-based stage type has no candidates, so no candidate fields",
                    "drop candidate_fields=, or base the type on a list stage type")
    fields = [f for f, _ in items]
    if isinstance(required, str):
        raise error(f"required={required!r} is a string", f"pass required=[{required!r}]")
    for field in required:
        if field not in fields:
            raise error(f"required field {field!r} is not one of candidate_fields "
                        f"({', '.join(fields) or 'none'})", "declare it in candidate_fields=")
    definition = StageTypeDef(name, base, tuple(items), tuple(required), description)
    problem = registry.add_type(definition)
    if problem is not None:
        raise error(*problem)
    for func in metrics:
        _register(name, func, None, (), "polars", DEFAULT_BUDGET_MS)
    return definition
