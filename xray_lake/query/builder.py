"""The typed query builder: column namespaces `run`, `stage`, `candidate` and an immutable `Query`.

    from xray_lake.query import run, stage, candidate
    lake.query().where(stage.type == "filtering", stage.fail_ratio > 0.9,
                       run.label == "competitor_discovery").per_run().to_polars()
    lake.query().where(candidate.field("price", float) > 100)   # a promoted field

Columns are typed (`NumCol`, `StrCol`, `BoolCol`, `TimeCol`, `DateCol`, `MapCol`), so a type
checker rejects `stage.fail_ratio > "x"` or `stage.type.gt(3)`. Comparisons build the same
condition nodes the JSON language builds, and the same compiler turns them into SQL. Every
`Query` method returns a new query; the original is never changed.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from xray_lake.errors import QueryError
from xray_lake.query import nodes as n
from xray_lake.query.nodes import Order, Predicate, Table, TimeLike

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from xray_lake.query.compiler import CompiledQuery
    from xray_lake.query.lake import Lake

__all__ = [
    "BoolCol",
    "CandidateColumns",
    "Col",
    "DateCol",
    "MapCol",
    "NumCol",
    "Query",
    "RunColumns",
    "StageColumns",
    "StrCol",
    "TimeCol",
    "candidate",
    "has_candidate",
    "run",
    "stage",
]

T = TypeVar("T")


class Col(Generic[T]):
    """A column (or map entry) holding values of type `T`; comparing it builds a condition.

    `==` / `!=` with None test for null. Use `&`, `|`, `~` to combine conditions.
    """

    __slots__ = ("node",)

    def __init__(self, node: n.Expr) -> None:
        self.node = node

    def _cmp(self, op: n.CmpOp, value: object) -> Predicate:
        return n.Compare(self.node, op, n.Param(value))

    def eq(self, value: T) -> Predicate:
        return self._cmp("=", value)

    def ne(self, value: T) -> Predicate:
        """Not equal; a null column counts as not equal (two-valued, like MongoDB's $ne)."""
        return self._cmp("!=", value)

    def __eq__(self, value: T | None) -> Predicate:  # type: ignore[override]
        return n.IsNull(self.node) if value is None else self._cmp("=", value)

    def __ne__(self, value: T | None) -> Predicate:  # type: ignore[override]
        return n.IsNull(self.node, negated=True) if value is None else self._cmp("!=", value)

    __hash__ = None  # type: ignore[assignment]

    def isin(self, values: Iterable[T]) -> Predicate:
        return n.InList(self.node, tuple(n.Param(v) for v in values))

    def notin(self, values: Iterable[T]) -> Predicate:
        return n.InList(self.node, tuple(n.Param(v) for v in values), negated=True)

    def is_null(self) -> Predicate:
        return n.IsNull(self.node)

    def is_not_null(self) -> Predicate:
        return n.IsNull(self.node, negated=True)

    exists = is_not_null

    def asc(self) -> Order:
        return Order(self.node)

    def desc(self) -> Order:
        return Order(self.node, descending=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.node})"


class _Ordered(Col[T]):
    """A column whose values have an order: `> >= < <=`, `between`."""

    __slots__ = ()

    def gt(self, value: T) -> Predicate:
        return self._cmp(">", value)

    def ge(self, value: T) -> Predicate:
        return self._cmp(">=", value)

    def lt(self, value: T) -> Predicate:
        return self._cmp("<", value)

    def le(self, value: T) -> Predicate:
        return self._cmp("<=", value)

    def __gt__(self, value: T) -> Predicate:
        return self._cmp(">", value)

    def __ge__(self, value: T) -> Predicate:
        return self._cmp(">=", value)

    def __lt__(self, value: T) -> Predicate:
        return self._cmp("<", value)

    def __le__(self, value: T) -> Predicate:
        return self._cmp("<=", value)

    def between(self, low: T, high: T) -> Predicate:
        """`low <= column <= high`."""
        return n.And((self._cmp(">=", low), self._cmp("<=", high)))


class NumCol(_Ordered[float]):
    """A numeric column (ints are accepted wherever a float is)."""

    __slots__ = ()


class StrCol(_Ordered[str]):
    """A string column; `regex` matches anywhere in the value (RE2 syntax, `(?i)` for case)."""

    __slots__ = ()

    def regex(self, pattern: str) -> Predicate:
        return n.Regex(self.node, n.Param(pattern))


class DateCol(_Ordered[str | dt.date]):
    """The `date` partition column: 'YYYY-MM-DD' strings (a `datetime.date` is converted)."""

    __slots__ = ()


class BoolCol(Col[bool]):
    """A boolean column."""

    __slots__ = ()

    def is_true(self) -> Predicate:
        return self._cmp("=", True)

    def is_false(self) -> Predicate:
        return self._cmp("=", False)


class TimeCol(_Ordered[dt.date]):
    """A UTC timestamp column; naive datetimes are taken as UTC, a date as its midnight."""

    __slots__ = ()

    def _bound(self, since: TimeLike | None, until: TimeLike | None) -> Predicate:
        col = self.node
        assert isinstance(col, n.Column)
        if col.name == "started_at" and col.table in (Table.RUN, Table.STAGE):
            return n.TimeBound.of(col.table, since=since, until=until)
        parts: list[Predicate] = []
        if since is not None:
            parts.append(self._cmp(">=", n.parse_time(since)))
        if until is not None:
            parts.append(self._cmp("<", n.parse_time(until, end_of_day=True)))
        return parts[0] if len(parts) == 1 else n.And(tuple(parts))

    def since(self, value: TimeLike) -> Predicate:
        """At or after `value` (ISO text, date, datetime, or relative '7d' / timedelta ago)."""
        return self._bound(value, None)

    def until(self, value: TimeLike) -> Predicate:
        """Before `value`; a bare date includes that whole day."""
        return self._bound(None, value)


class MapCol:
    """A map column; `stage.metrics["ndcg"]` / `stage.reason_counts["price"]` is a `NumCol`."""

    __slots__ = ("node",)

    def __init__(self, node: n.Column) -> None:
        self.node = node

    def __getitem__(self, key: str) -> NumCol:
        return NumCol(n.MapItem(self.node, key))

    def __repr__(self) -> str:
        return f"MapCol({self.node})"


def _col(table: Table, name: str) -> Any:
    """The typed column object for one column of `table` (by its kind)."""
    node = n.Column(table, name)
    if name == "date":
        return DateCol(node)
    return {n.Kind.NUM: NumCol, n.Kind.STR: StrCol, n.Kind.BOOL: BoolCol,
            n.Kind.TIME: TimeCol, n.Kind.MAP: MapCol}[node.kind](node)


class _Columns:
    """Shared by the three namespaces: an attribute per column, and `col(name)` for a column
    named at run time.

    Each namespace declares its columns as annotations only, so that a type checker knows
    each one's class; `__init__` makes them all, from the table's column kinds
    (tests/test_builder_columns.py keeps the annotations and the schema one list).
    """

    table: ClassVar[Table]

    def __init__(self) -> None:
        for name in n.COLUMNS[self.table]:
            setattr(self, name, _col(self.table, name))

    def col(self, name: str) -> Any:
        """The column called `name` (QueryError with the nearest name if there is none)."""
        return _col(self.table, name)

    def __repr__(self) -> str:
        return f"<{self.table.view} columns: {', '.join(n.COLUMNS[self.table])}>"


class _Span:
    """The columns a run and a stage share: when it ran, for how long, and how it ended."""

    started_at: TimeCol
    finished_at: TimeCol
    duration_ms: NumCol
    status: StrCol
    error_message: StrCol
    error_code: StrCol


class RunColumns(_Span, _Columns):
    """Columns of `runs`."""

    table = Table.RUN

    run_id: StrCol
    label: StrCol
    date: DateCol
    n_stages: NumCol
    attributes: StrCol
    input_json: StrCol
    output_json: StrCol
    sdk_version: StrCol
    host: StrCol
    pid: NumCol
    n_stages_shed: NumCol
    n_candidates_shed: NumCol


class StageColumns(_Span, _Columns):
    """Columns of `stages`, metrics included."""

    table = Table.STAGE

    run_id: StrCol
    stage_id: StrCol
    label: StrCol
    date: DateCol
    name: StrCol
    type: StrCol
    seq: NumCol
    parent_stage_id: StrCol
    input_json: StrCol
    output_json: StrCol
    n_in: NumCol
    n_out: NumCol
    n_passed: NumCol
    n_failed: NumCol
    fail_ratio: NumCol
    pass_ratio: NumCol
    score_min: NumCol
    score_max: NumCol
    score_mean: NumCol
    score_std: NumCol
    score_p50: NumCol
    score_p90: NumCol
    n_score_null: NumCol
    rank_kendall_tau: NumCol
    rank_mean_displacement: NumCol
    topk_overlap: NumCol
    n_unique: NumCol
    duplicate_ratio: NumCol
    n_generated: NumCol
    n_empty_reason: NumCol
    reason_counts: MapCol
    metrics: MapCol
    sampled: BoolCol
    sample_rate: NumCol
    n_candidates_stored: NumCol
    n_truncated: NumCol
    validation_error: StrCol


class CandidateColumns(_Columns):
    """Columns of `candidates`; conditions on them match stages having such a candidate."""

    table = Table.CANDIDATE

    run_id: StrCol
    stage_id: StrCol
    label: StrCol
    date: DateCol
    stage_name: StrCol
    stage_type: StrCol
    candidate_id: StrCol
    in_position: NumCol
    out_position: NumCol
    passed: BoolCol
    reason_label: StrCol
    reason_text: StrCol
    score: NumCol
    reason: StrCol
    payload: StrCol

    @overload
    def field(  # type: ignore[overload-overlap]  # bool before int: the narrower type wins
            self, name: str, type: builtins.type[bool]) -> BoolCol: ...
    @overload
    def field(self, name: str, type: builtins.type[int] | builtins.type[float]) -> NumCol: ...
    @overload
    def field(self, name: str, type: builtins.type[str]) -> StrCol: ...
    def field(self, name: str, type: builtins.type[object]) -> Col[Any]:
        """The promoted field `name` (a stage's `fields={name: ...}`, stored as `f_<name>`),
        typed by `type`: int or float -> NumCol, str -> StrCol, bool -> BoolCol.

        Checked against the lake when the query runs: an unknown name raises QueryError with
        the nearest promoted field, a type other than the stored one says which to use."""
        kinds: dict[builtins.type[object], n.Kind] = {
            bool: n.Kind.BOOL, int: n.Kind.NUM, float: n.Kind.NUM, str: n.Kind.STR}
        kind = kinds.get(type)
        if kind is None:
            raise QueryError(f"candidate.field({name!r}, {type!r}): the type is one of int, "
                             "float, bool, str")
        if not isinstance(name, str):
            raise QueryError(f"candidate.field() takes the field's name, got {name!r}")
        columns: dict[n.Kind, builtins.type[Col[Any]]] = {
            n.Kind.NUM: NumCol, n.Kind.STR: StrCol, n.Kind.BOOL: BoolCol}
        return columns[kind](n.PromotedColumn.named(name, kind))


run = RunColumns()
stage = StageColumns()
candidate = CandidateColumns()


def has_candidate(*conditions: Predicate) -> Predicate:
    """The stage has one candidate meeting every condition (negate with `~`)."""
    return n.HasCandidate(n.And(conditions) if len(conditions) != 1 else conditions[0])


def _candidate_only(pred: Predicate) -> bool:
    tables = {c.table for c in n.columns_of(pred, into_candidates=False)}
    return tables == {Table.CANDIDATE}


@dataclass(frozen=True)
class Query:
    """An immutable query over a lake; every method returns a new Query."""

    lake: Lake | None = field(default=None, compare=False, repr=False)
    node: n.Query = field(default_factory=n.Query)

    def _with(self, **changes: Any) -> Query:
        return dataclasses.replace(self, node=dataclasses.replace(self.node, **changes))

    def where(self, *conditions: Predicate) -> Query:
        """Add conditions, all of which must hold.

        Conditions on candidate columns given in one call are one candidate clause: the stage
        must have a single candidate meeting all of them (use `has_candidate` to group
        differently).
        """
        for cond in conditions:
            if not isinstance(cond, Predicate):
                raise QueryError(f"where() takes conditions such as stage.fail_ratio > 0.9, "
                                 f"got {cond!r}")
        on_candidates = [c for c in conditions if _candidate_only(c)]
        rest = [c for c in conditions if not _candidate_only(c)]
        if on_candidates:
            rest.append(has_candidate(*on_candidates))
        return self._with(where=(*self.node.where, *rest))

    def since(self, value: TimeLike) -> Query:
        """Runs started at or after `value` (also prunes older date partitions)."""
        return self.where(n.TimeBound.of(Table.RUN, since=value))

    def until(self, value: TimeLike) -> Query:
        """Runs started before `value` (a bare date: up to the end of that day)."""
        return self.where(n.TimeBound.of(Table.RUN, until=value))

    def per_run(self) -> Query:
        """One row per run: run columns and `n_matching_stages`."""
        return self._with(per="run")

    def per_stage(self) -> Query:
        """One row per stage (the default): stage columns and the run's as `run_<name>`."""
        return self._with(per="stage")

    def select(self, *columns: Col[Any]) -> Query:
        """Only these result columns (run columns per stage are named `run_<name>`)."""
        return self._with(select=tuple(c.node for c in columns))

    def order_by(self, *keys: Order | Col[Any]) -> Query:
        """Sort keys: a column (ascending) or `col.desc()`; nulls come last."""
        return self._with(order_by=tuple(k if isinstance(k, Order) else k.asc() for k in keys))

    def limit(self, count: int) -> Query:
        return self._with(limit=count)

    def compile(self) -> CompiledQuery:
        from xray_lake.query.compiler import compile_query

        return compile_query(self.node)

    def sql(self) -> tuple[str, list[object]]:
        """The DuckDB SQL and its parameters (`$1` is `params[0]`)."""
        compiled = self.compile()
        return compiled.sql, list(compiled.params)

    def _lake(self) -> Lake:
        if self.lake is None:
            raise QueryError("this query has no lake: build it with lake.query()")
        return self.lake

    def _checked(self) -> Lake:
        """The lake, once every promoted field the query reads is known to it (with its type)."""
        lake = self._lake()
        if any(isinstance(x, n.PromotedColumn) for x in n.walk(self.node)):
            from xray_lake.query.promoted_fields import check_fields, promoted_columns

            try:
                check_fields(self.node, promoted_columns(lake))
            except QueryError:  # maybe promoted by files newer than the views: look again
                lake.refresh()
                check_fields(self.node, promoted_columns(lake))
        return lake

    def to_polars(self) -> pl.DataFrame:
        text, params = self.sql()
        return self._checked().sql(text, params)

    def to_arrow(self) -> pa.Table:
        text, params = self.sql()
        return self._checked().sql_arrow(text, params)
