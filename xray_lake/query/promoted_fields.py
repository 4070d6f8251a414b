"""Which promoted candidate fields (`f_<name>` columns) a lake holds, read from its DuckDB views.

Promoted columns depend on what stages declared (`fields=`), so the query front ends cannot
know them statically: the JSON language resolves its candidate keys against them, and the
builder checks `candidate.field(name, type)` against them before running a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from xray_lake.errors import QueryError
from xray_lake.query.nodes import Kind, Node, PromotedColumn, unknown_name, walk
from xray_lake.records.promoted import PROMOTED_PREFIX
from xray_lake.records.schema import CANDIDATES

if TYPE_CHECKING:
    from xray_lake.query.lake import Lake

__all__ = ["check_fields", "kind_of", "promoted_columns"]


def kind_of(duckdb_type: str) -> Kind:
    """The query kind of a DuckDB column type (promoted columns are BIGINT, DOUBLE, BOOLEAN or
    VARCHAR; other types are read as strings)."""
    name = duckdb_type.upper()
    if name == "BOOLEAN":
        return Kind.BOOL
    if name.startswith("TIMESTAMP"):
        return Kind.TIME
    if name in {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER",
                "DOUBLE", "FLOAT", "REAL"} or name.startswith("DECIMAL"):
        return Kind.NUM
    return Kind.STR


def promoted_columns(lake: Lake) -> dict[str, Kind]:
    """Column name (`f_price`) -> kind of every promoted column in the lake's `candidates` view."""
    rows = lake.connection.execute(
        "SELECT column_name, column_type FROM (DESCRIBE candidates)").fetchall()
    fixed = set(CANDIDATES.names)
    return {str(name): kind_of(str(kind)) for name, kind in rows
            if str(name).startswith(PROMOTED_PREFIX) and name not in fixed}


def field_names(columns: Iterable[str]) -> list[str]:
    """The names queries use for promoted columns (`price` for `f_price`)."""
    return [c.removeprefix(PROMOTED_PREFIX) for c in columns]


def check_fields(node: Node, columns: Mapping[str, Kind]) -> None:
    """Every promoted field a query reads exists in the lake with the kind the query assumed."""
    for item in walk(node):
        if not isinstance(item, PromotedColumn):
            continue
        name = item.name.removeprefix(PROMOTED_PREFIX)
        if item.name not in columns:
            raise unknown_name("promoted field", name, field_names(columns) or ["(none)"],
                               "candidates (promote fields with fields= on a stage)")
        stored = columns[item.name]
        if stored is not item.kind:
            raise QueryError(
                f"candidate.field({name!r}) is used as a {item.kind} column, but the lake "
                f"stores {item.name} as {stored} (files that disagree on a field's type are "
                f"read as strings: declare it with xr.Field({name!r}, <type>)); "
                f"use candidate.field({name!r}, {_PY_TYPES[stored]})"
            )


_PY_TYPES = {Kind.NUM: "float", Kind.STR: "str", Kind.BOOL: "bool", Kind.TIME: "str"}
