"""Reading the lake: DuckDB views, SQL to polars, and the query front ends.

`run`, `stage`, `candidate` are the typed builder's column namespaces
(`lake.query().where(stage.fail_ratio > 0.9)`); `find` is the JSON query language. The compiler
(and sqlglot) loads only when a query is first compiled, so `import xray_lake` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xray_lake.query.builder import (
    BoolCol,
    Col,
    DateCol,
    MapCol,
    NumCol,
    Query,
    StrCol,
    TimeCol,
    candidate,
    has_candidate,
    run,
    stage,
)

if TYPE_CHECKING:
    from xray_lake.query.compiler import CompiledQuery, UnknownNodeError, compile_query
    from xray_lake.query.jsonql import compile_find, find

__all__ = [
    "BoolCol",
    "Col",
    "CompiledQuery",
    "DateCol",
    "MapCol",
    "NumCol",
    "Query",
    "StrCol",
    "TimeCol",
    "UnknownNodeError",
    "candidate",
    "compile_find",
    "compile_query",
    "find",
    "has_candidate",
    "run",
    "stage",
]

_LAZY = {
    "CompiledQuery": "xray_lake.query.compiler",
    "UnknownNodeError": "xray_lake.query.compiler",
    "compile_query": "xray_lake.query.compiler",
    "compile_find": "xray_lake.query.jsonql",
    "find": "xray_lake.query.jsonql",
}


def __getattr__(name: str) -> Any:
    """Load the compiler-backed names on first use (they import sqlglot)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
