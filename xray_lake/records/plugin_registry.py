"""Metric plugins and custom stage types: their registry, and running plugins on the writer thread.

The sdk fills the registry (`xr.metric`, `xr.register_metric`, `xr.register_stage_type`),
and so do packaged plugins through the `xray_lake.metrics` entry-point group, loaded once,
lazily. `measure()` runs on the writer's thread when a stage row is built: each plugin gets
the stage's candidate rows as columns (all of them, before sampling) and a read-only view
of the stage row, and returns numbers for the row's `metrics` map. A plugin that raises,
returns junk or overruns its time budget is logged once and counted; the stage is recorded
all the same.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # plugins run on the writer's side, which loads pyarrow; registering needs none
    import pyarrow as pa

from xray_lake._internal_errors import warn_once
from xray_lake.records.events import STAGE_TYPES, StageSpec

GROUP = "xray_lake.metrics"
"""The entry-point group of packaged plugins (modules or callables that register them)."""

DEFAULT_BUDGET_MS = 100.0
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STANDARD_COLUMNS = ("candidate_id", "in_position", "out_position", "passed", "reason_label",
                    "reason_text", "score", "reason")
"""The columns every plugin's candidate table has, one row per candidate row of the stage."""

Frame = Literal["polars", "arrow"]
# (names of candidate fields to read, with the standard columns?) -> the candidate table
TableFactory = Callable[[Sequence[tuple[str, str]], bool], "pa.Table"]


@dataclass(frozen=True, slots=True)
class StageTypeDef:
    """A registered stage type: recorded like `base`, under its own name."""

    name: str
    base: str
    fields: tuple[tuple[str, str | None], ...] = ()  # (field, the role it fills or None)
    required: tuple[str, ...] = ()
    description: str | None = None

    def role(self, field: str) -> str | None:
        return dict(self.fields).get(field)


@dataclass(frozen=True, slots=True, eq=False)
class MetricPlugin:
    """A function computing one metric (or several: a mapping) for stages of one type."""

    stage_type: str
    name: str
    func: Callable[..., object]
    fields: tuple[str, ...] = ()  # candidate fields added as columns
    frame: Frame = "polars"
    budget_ms: float | None = DEFAULT_BUDGET_MS
    qualname: str = "?"
    where: str = "?"

    @property
    def key(self) -> str:
        return f"{self.stage_type}:{self.name}"


_lock = threading.Lock()  # registry changes and counters; never held while importing
_load_lock = threading.Lock()  # one thread loads the entry points
_types: dict[str, StageTypeDef] = {}
_by_type: dict[str, tuple[MetricPlugin, ...]] = {}  # replaced whole on change (lock-free reads)
_loaded = False
_loading: int | None = None  # the thread loading entry points, while it does
_load_problems: list[tuple[str, str]] = []  # (entry point, what went wrong)
failures: Counter[str] = Counter()  # plugin key -> calls that raised or returned junk
slow: Counter[str] = Counter()  # plugin key -> calls over the plugin's time budget


# --- registry ------------------------------------------------------------------------------


def stage_type(name: str) -> StageTypeDef | None:
    return _types.get(name)


def stage_types() -> dict[str, StageTypeDef]:
    return dict(_types)


def known_types() -> list[str]:
    return [*STAGE_TYPES, *_types]


def plugins(type_name: str | None = None) -> tuple[MetricPlugin, ...]:
    """The plugins of one stage type (all of them with no type), in registration order."""
    if type_name is not None:
        return _by_type.get(type_name, ())
    return tuple(p for group in _by_type.values() for p in group)


def add_type(definition: StageTypeDef) -> tuple[str, str] | None:
    """Register a stage type; (problem, fix) when the name is taken by a different one."""
    with _lock:
        if definition.name in STAGE_TYPES:
            return (f"stage type {definition.name!r} is a built-in type",
                    f"choose another name, e.g. {definition.name + '_custom'!r}")
        known = _types.get(definition.name)
        if known is not None and known != definition:
            return (f"stage type {definition.name!r} is already registered with a different "
                    f"definition ({_describe(known)})",
                    "register it once (identical re-registration is allowed), or choose "
                    "another name")
        _types[definition.name] = definition
    return None


def add_plugin(plugin: MetricPlugin) -> tuple[str, str] | None:
    """Register a metric plugin; (problem, fix) when its metric name is taken for that type.

    The same function registered again (a module imported twice) replaces itself."""
    global _by_type
    with _lock:
        group = list(_by_type.get(plugin.stage_type, ()))
        for i, other in enumerate(group):
            if other.name != plugin.name:
                continue
            if other.qualname != plugin.qualname:
                return (f"metric {plugin.name!r} of stage type {plugin.stage_type!r} is already "
                        f"computed by {other.qualname} ({other.where})",
                        "give this plugin another name=")
            group[i] = plugin
            break
        else:
            group.append(plugin)
        _by_type = {**_by_type, plugin.stage_type: tuple(group)}
    return None


def snapshot() -> tuple[dict[str, StageTypeDef], dict[str, tuple[MetricPlugin, ...]], bool]:
    """The registry as it is (for tests: `restore()` puts it back)."""
    with _lock:
        return dict(_types), dict(_by_type), _loaded


def restore(state: tuple[dict[str, StageTypeDef], dict[str, tuple[MetricPlugin, ...]], bool]
            ) -> None:
    global _by_type, _loaded
    with _lock:
        _types.clear()
        _types.update(state[0])
        _by_type = dict(state[1])
        _loaded = state[2]
        failures.clear()
        slow.clear()
        _load_problems.clear()


def _describe(t: StageTypeDef) -> str:
    fields = ", ".join(f"{f}->{r}" if r else f for f, r in t.fields) or "no fields"
    required = f"; required {', '.join(t.required)}" if t.required else ""
    return f"base {t.base!r}; {fields}{required}"


def stats() -> dict[str, dict[str, int]]:
    """Per plugin (`type:name`): calls that failed, calls over budget."""
    with _lock:
        return {"failures": dict(failures), "slow": dict(slow)}


# --- entry points --------------------------------------------------------------------------


def load_entry_points(timeout: float = -1) -> list[tuple[str, str]]:
    """Import the `xray_lake.metrics` entry points, once per process; their imports register
    plugins and stage types. An entry point naming a callable that is not a plugin is called
    with no argument (a `setup()` that registers). Returns (entry point, problem) pairs.

    Another thread loading meanwhile is waited for up to `timeout` seconds (-1: as long as it
    takes); a registration made while loading (same thread) does not load again."""
    global _loaded, _loading
    if _loaded or _loading == threading.get_ident():
        return list(_load_problems)
    if not _load_lock.acquire(timeout=timeout):
        return list(_load_problems)
    try:
        if _loaded:
            return list(_load_problems)
        _loading = threading.get_ident()
        try:
            import importlib.metadata  # only when packaged plugins are first looked up

            found = list(importlib.metadata.entry_points(group=GROUP))
        except Exception as exc:
            found = []
            _load_problems.append(("(all)", f"cannot list entry points: {exc!r}"))
        for ep in found:
            try:
                obj = ep.load()
                if _is_setup(obj):
                    obj()
                elif callable(obj) and not isinstance(obj, type) and not hasattr(
                        obj, "__xray_metric__"):
                    raise TypeError("it names a function that is neither a registered metric "
                                    "plugin (@xr.metric) nor a setup() of no argument")
            except Exception as exc:
                problem = f"{ep.name} = {ep.value}: {type(exc).__name__}: {exc}"
                _load_problems.append((ep.name, problem))
                with _lock:
                    failures[f"entry-point:{ep.name}"] += 1
                warn_once(f"entry-point:{ep.name}", "xray-lake: metric plugin entry point %s "
                          "failed to load (%s); its plugins are not used. Counted in "
                          "xr.stats()['metric_plugins'].", ep.name, problem)
        _loaded = True
    finally:
        _loading = None
        _load_lock.release()
    return list(_load_problems)


def _is_setup(obj: object) -> bool:
    if not callable(obj) or isinstance(obj, type) or hasattr(obj, "__xray_metric__"):
        return False
    try:
        inspect.signature(obj).bind()
    except (TypeError, ValueError):
        return False
    return True


# --- running plugins (writer thread) -------------------------------------------------------


def reads_items(spec: StageSpec) -> bool:
    """Whether measuring this stage reads candidate fields the row builder would not decode."""
    definition = _types.get(spec.custom_type) if spec.custom_type else None
    if definition is not None and any(role is None for _, role in definition.fields):
        return True
    return any(p.fields for p in _by_type.get(spec.recorded_type, ()))


def measure(spec: StageSpec, row: dict[str, Any], problems: list[str],
            table: TableFactory | None) -> None:
    """Required fields of a custom type, then the plugins of the stage's type into
    `row["metrics"]`. `table` builds the candidate columns (None: the stage has none)."""
    if not _loaded:
        load_entry_points()
    definition = _types.get(spec.custom_type) if spec.custom_type else None
    group = _by_type.get(spec.recorded_type, ())
    if not group and (definition is None or not definition.required):
        return
    keys = dict(spec.type_fields)  # every field of the type -> the key it is read from
    own = definition.fields if definition is not None else ()
    aliases = [(f, role) for f, role in own if role]  # a copy of the column the field fills
    wanted = {f: keys.get(f, f) for f, role in own if role is None}  # read from candidates
    for plugin in group:
        for f in plugin.fields:
            if f not in STANDARD_COLUMNS and f not in keys:
                wanted.setdefault(f, f)
    columns = _columns(table, list(wanted.items()), bool(group), aliases)
    if definition is not None and definition.required and columns.num_rows:
        for f in definition.required:
            missing = columns[f].null_count
            if missing:
                problems.append(f"{missing} of {columns.num_rows} candidates have no {f!r} "
                                f"(required by stage type {definition.name!r}, read from "
                                f"{keys.get(f, f)!r})")
    if group:
        found = _run(group, columns, MappingProxyType(dict(row)), spec.name)
        if found:
            row["metrics"] = {**(row.get("metrics") or {}), **found}


def _columns(table: TableFactory | None, wanted: list[tuple[str, str]], standard: bool,
             aliases: list[tuple[str, str]]) -> pa.Table:
    import pyarrow as pa

    if table is None:  # a raw-based type, or a stage that recorded no candidate list
        names = [*STANDARD_COLUMNS, *(f for f, _ in wanted), *(f for f, _ in aliases)]
        return pa.table({n: pa.array([], pa.null()) for n in dict.fromkeys(names)})
    columns = table(wanted, standard or bool(aliases))
    for name, role in aliases:
        if name not in columns.column_names:
            columns = columns.append_column(name, columns[role])
    return columns


def _run(group: Sequence[MetricPlugin], columns: pa.Table, stage: Mapping[str, Any],
         stage_name: str) -> dict[str, float]:
    found: dict[str, float] = {}
    frame: object = None
    for plugin in group:
        try:
            if plugin.frame == "arrow":
                data: object = columns
            else:
                import polars as pl

                data = frame = pl.from_arrow(columns) if frame is None else frame.clone()  # type: ignore[attr-defined]
        except Exception as exc:  # a column polars cannot hold: the plugin cannot run
            _failed(plugin, stage_name, f"its candidate columns could not be built ({exc!r})")
            continue
        t0 = time.perf_counter()
        try:
            result = plugin.func(data, stage)
        except BaseException as exc:  # a writer thread survives anything a plugin does
            _failed(plugin, stage_name, f"raised {type(exc).__name__}: {exc}{_at(exc)}")
            continue
        finally:
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
        if plugin.budget_ms is not None and elapsed_ms > plugin.budget_ms:
            with _lock:
                slow[plugin.key] += 1
            warn_once(f"plugin-slow:{plugin.key}", "xray-lake: metric plugin %s (%s) took "
                      "%.1f ms on stage %r, over its budget of %g ms; plugins run on the "
                      "writer thread and delay writing. Its value is kept; slow calls are "
                      "counted in xr.stats()['metric_plugins']['slow'].", plugin.key,
                      plugin.qualname, elapsed_ms, stage_name, plugin.budget_ms)
        values = _values(plugin, result)
        if isinstance(values, str):
            _failed(plugin, stage_name, values)
        else:
            found.update(values)
    return found


def _values(plugin: MetricPlugin, result: object) -> dict[str, float] | str:
    """The metrics a plugin's result stands for, or what is wrong with it."""
    if result is None:
        return {}
    if isinstance(result, Mapping):
        found: dict[str, float] = {}
        for key, value in result.items():
            if not isinstance(key, str) or not key:
                return f"returned a mapping with key {key!r}; keys must be non-empty strings"
            number = _number(value)
            if isinstance(number, str):
                return f"returned {{{key!r}: {number}}}"
            if number is not None:
                found[f"{plugin.name}.{key}"] = number
        return found
    number = _number(result)
    if isinstance(number, str):
        return f"returned {number}"
    return {} if number is None else {plugin.name: number}


def _number(value: object) -> float | str | None:
    """The value as a finite float (None: no value), or what is wrong with it."""
    import pyarrow as pa

    if isinstance(value, pa.Scalar):
        value = value.as_py()
    elif type(value).__module__.startswith("polars") and hasattr(value, "item"):
        with contextlib.suppress(Exception):  # a 1x1 polars frame or a one-value series
            value = value.item()
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return (f"{type(value).__name__} {_short(value)}; a plugin returns a finite number, "
                "None, or a mapping name -> number")
    number = float(value)
    if not math.isfinite(number):
        return f"{number} (metrics must be finite)"
    return number


def _short(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = "?"
    return text if len(text) <= 80 else text[:77] + "..."


def _at(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _failed(plugin: MetricPlugin, stage_name: str, problem: str) -> None:
    with _lock:
        failures[plugin.key] += 1
    warn_once(f"plugin-failed:{plugin.key}", "xray-lake: metric plugin %s (%s, %s) %s on "
              "stage %r; the stage is recorded without it. Logged once per plugin; failures "
              "are counted in xr.stats()['metric_plugins']['failures'].", plugin.key,
              plugin.qualname, plugin.where, problem, stage_name)
