"""`find(..., columns=[...])`: result column names -> the expressions the compiler selects.

Naming only what a question needs is the fast path: DuckDB then reads those Parquet columns
alone, and joins `runs` only when a `run_` column is asked for (figures for the headline
question in benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from xray_lake.errors import QueryError
from xray_lake.query.nodes import COLUMNS, Column, Expr, Kind, MapItem, Per, Table, unknown_name

RUN_PREFIX = "run_"
_SHARED = ("run_id", "label", "date")

ALL: Final = "all"
"""`columns="all"`: every stage column and the run's (per stage), or every run column."""

DEFAULT: Final[Mapping[str, tuple[str, ...]]] = {
    "stage": ("run_id", "label", "date", "stage_id", "name", "type", "n_in", "n_out",
              "n_passed", "n_failed", "fail_ratio", "pass_ratio"),
    "run": ("run_id", "label", "date", "started_at", "status", "n_stages",
            "n_matching_stages", "input_json"),
}
"""What `find` returns without `columns`: ids, label and date, the stage's name and type,
counts and ratios (per run: the run's status, input and how many of its stages matched).
Narrow, so a stage question never joins `runs` and a terminal table fits."""


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
