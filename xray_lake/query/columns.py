"""`find(..., columns=[...])`: result column names -> the expressions the compiler selects.

Naming only what a question needs is the fast path: DuckDB then reads those Parquet columns
alone, and joins `runs` only when a `run_` column is asked for (the headline question over
100k runs: ~4x faster than every stage and run column; benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from xray_lake.errors import QueryError
from xray_lake.query.nodes import COLUMNS, Column, Expr, Kind, MapItem, Per, Table, unknown_name

RUN_PREFIX = "run_"
_SHARED = ("run_id", "label", "date")


def valid_names(per: Per) -> list[str]:
    """The names `columns` accepts for a result grain, as the result names them."""
    if per == "run":
        return list(COLUMNS[Table.RUN])
    return [*COLUMNS[Table.STAGE],
            *(RUN_PREFIX + name for name in COLUMNS[Table.RUN] if name not in _SHARED)]


def resolve(names: Sequence[str], per: Per) -> tuple[Expr, ...]:
    """Each name as the result names it (`fail_ratio`, `run_status`, `metrics.<key>`).

    Raises QueryError naming the nearest valid column for an unknown one.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise QueryError(f"columns must be a list of column names, got {names!r}")
    if not names:
        raise QueryError("columns is empty: name at least one column, or leave it out")
    out: list[Expr] = []
    for name in names:
        if not isinstance(name, str):
            raise QueryError(f"columns: {name!r} is not a column name (a string)")
        out.append(_one(name, per))
    return tuple(out)


def _one(name: str, per: Per) -> Expr:
    table = Table.RUN if per == "run" else Table.STAGE
    column, dot, key = name.partition(".")
    if dot and key and COLUMNS[table].get(column) is Kind.MAP:
        return MapItem(Column(table, column), key)
    if name in COLUMNS[table]:
        return Column(table, name)
    if per == "stage" and name.startswith(RUN_PREFIX):
        bare = name[len(RUN_PREFIX):]
        if bare in COLUMNS[Table.RUN] and bare not in _SHARED:
            return Column(Table.RUN, bare)
    raise unknown_name("column", name, valid_names(per), "columns")
