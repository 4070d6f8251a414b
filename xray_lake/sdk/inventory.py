"""What this process decorated: pipelines, entrypoints and stages, for `xray-lake check`.

Filled at decoration time (one dict write per decorated function), keyed by where the
function is defined, so re-decorating the same code (a reload, a function defined in a loop)
replaces its entry instead of growing the list.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xray_lake.records import plugin_registry as registry
from xray_lake.records.events import StageSpec
from xray_lake.sdk.signature import location

_lock = threading.Lock()
_found: dict[tuple[str, str, str], Declared] = {}


@dataclass(frozen=True, slots=True)
class Declared:
    """One decorated function or class."""

    kind: str  # "pipeline", "entrypoint" or "stage"
    name: str  # pipeline label, stage name, or the entrypoint's function name
    module: str  # the defining module's name
    qualname: str  # module.qualified.name
    where: str  # file:line
    type: str | None = None  # a stage's type (built-in or registered); "class" or "function"
    # for a pipeline
    fields: dict[str, str] = field(default_factory=dict)  # a stage's field mappings


def add(entry: Declared) -> None:
    with _lock:
        _found[(entry.kind, entry.qualname, entry.where)] = entry


def of(kind: str, name: str, target: Callable[..., Any], detail: str | None = None) -> Declared:
    """The entry of a decorated function or class (a class's line is looked up only when
    reported: finding it costs a read of the source file)."""
    module = getattr(target, "__module__", "") or ""
    if inspect.isclass(target):
        return Declared(kind, name, module, f"{module}.{target.__qualname__}",
                        f"{getattr(sys.modules.get(module), '__file__', '?')}:?", detail)
    qualname, where = location(target)
    return Declared(kind, name, module, qualname, where, detail)


def add_stage(spec: StageSpec, func: Callable[..., Any], where: str) -> None:
    """A stage's mappings as the user wrote them: a custom type's own fields in place of the
    roles they fill, promoted fields as `fields[name]`."""
    fields = spec.fields.named()
    definition = registry.stage_type(spec.custom_type) if spec.custom_type else None
    for _, role in definition.fields if definition else ():
        fields.pop(role or "", None)
    fields.update(spec.type_fields)
    fields.update({f"fields[{p.name}]": p.source for p in spec.fields.promoted})
    add(Declared("stage", spec.name, getattr(func, "__module__", "") or "", spec.qualname or "?",
                 where, spec.recorded_type, fields))


def declared() -> list[Declared]:
    """Everything decorated so far, in decoration order."""
    with _lock:
        return list(_found.values())
