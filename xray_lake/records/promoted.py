"""Promoted fields: candidate fields stored as typed columns of `candidates` (`fields=` on a stage).

A stage's `fields={"price": "price", "in_stock": xr.Field("stock", bool)}` names, per column,
the candidate field to read (a dict key, attribute or model field) and optionally its type.
Column `price` is stored as `f_price`: the prefix keeps user names apart from the fixed columns,
today's and future ones. Values are read on the writer's thread from the frozen payloads (the
JSON the caller's thread encoded), so they are what the stage returned, never a later mutation.

Types: a declared type (`int`, `float`, `bool`, `str`) wins; a value that does not fit it is
stored null and counted. Undeclared types are inferred per stage call from its values: all
bools -> bool, all ints -> int64, ints and floats -> float64, all strings -> string, anything
else -> string (non-strings as their JSON text). A field absent from every candidate adds no
column. Readers unify a column across files: int64 + float64 -> double, any other mix -> string
(records/schema.py `unify_types`).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PROMOTED_PREFIX", "Field", "Promoted", "resolve_fields"]

_TYPES: dict[builtins.type[object], str] = {int: "int64", float: "float64", bool: "bool",
                                            str: "string"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Every promoted column is named `f_<name>`; no fixed column may ever start with it.
PROMOTED_PREFIX = "f_"


@dataclass(frozen=True, slots=True)
class Field:
    """A promoted field with a declared type: `fields={"in_stock": xr.Field("stock", bool)}`.

    `source` is the candidate's field (dict key, attribute or model field; default: the
    column's key); `type` one of int, float, bool, str (None: inferred from the values).
    """

    source: str | None = None
    type: builtins.type[object] | None = None


@dataclass(frozen=True, slots=True)
class Promoted:
    """One promoted column, resolved at decoration: where to read it and its declared type."""

    name: str  # the key given in fields= (what queries call it)
    source: str  # the candidate field read
    type: str | None  # "int64" | "float64" | "bool" | "string"; None: inferred per call

    @property
    def column(self) -> str:
        return PROMOTED_PREFIX + self.name


_FIX = ('pass fields={"price": "price"} (column -> candidate field) or '
        '{"price": xr.Field("price", float)} to declare the type')


def resolve_fields(fields: object) -> tuple[tuple[Promoted, ...], list[tuple[str, str]]]:
    """A stage's `fields=` argument resolved: (promoted columns, [(problem, fix)])."""
    if fields is None:
        return (), []
    if not isinstance(fields, Mapping):
        return (), [(f"fields={fields!r} is not a mapping", _FIX)]
    found: list[Promoted] = []
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for key, spec in fields.items():
        if not isinstance(key, str) or not _NAME.match(key):
            problems.append((f"fields key {key!r} is not a column name",
                             "use 1-63 letters, digits and _ starting with a letter, "
                             "e.g. fields={'price': 'price'}"))
            continue
        if key.lower() in seen:  # DuckDB names are case-insensitive
            problems.append((f"fields keys {seen[key.lower()]!r} and {key!r} differ only in case",
                             "give each promoted column a distinct name"))
            continue
        seen[key.lower()] = key
        declared: builtins.type[object] | None = None
        if isinstance(spec, Field):
            source, declared = (spec.source if spec.source is not None else key), spec.type
        else:
            source = spec
        if not isinstance(source, str) or not source:
            problems.append((f"fields[{key!r}]={spec!r} names no candidate field",
                             f"pass a field name, e.g. fields={{{key!r}: {key!r}}}, or "
                             f"xr.Field({key!r}, float)"))
            continue
        if declared is not None and declared not in _TYPES:
            problems.append((f"fields[{key!r}] declares type {declared!r}",
                             "declare one of int, float, bool, str (or no type: inferred)"))
            continue
        found.append(Promoted(key, source, _TYPES[declared] if declared is not None else None))
    return tuple(found), problems
