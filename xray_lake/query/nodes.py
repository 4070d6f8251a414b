"""Immutable, typed query nodes shared by the JSON language and the builder; validated when built.

A query is a tree of frozen dataclasses: column references (`Column`, `MapItem`), bound values
(`Param`), predicates (`Compare`, `InList`, `IsNull`, `Regex`, `And`, `Or`, `Not`, `TimeBound`,
`HasCandidate`) and the `Query` root. Both front ends build these nodes and nothing else, and
`xray_lake.query.compiler` is the only code that turns them into SQL. Every node checks itself in
`__post_init__`, so a wrong column, operator or value type fails where the query is written,
with a `QueryError` naming the valid choices, never later as a DuckDB binder error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, NoReturn, TypeAlias, TypeVar, get_args

import pyarrow as pa

from xray_lake.errors import QueryError
from xray_lake.records.promoted import PROMOTED_PREFIX
from xray_lake.records.schema import PARTITION_COLUMNS, table_schema

__all__ = [
    "PARTITION_COLUMNS",
    "And",
    "CmpOp",
    "Column",
    "Compare",
    "Expr",
    "HasCandidate",
    "InList",
    "IsNull",
    "Kind",
    "MapItem",
    "Node",
    "Not",
    "Or",
    "Order",
    "Param",
    "Per",
    "Predicate",
    "PromotedColumn",
    "Query",
    "Regex",
    "Table",
    "TimeBound",
    "TimeLike",
    "columns_of",
    "output_name",
    "parse_time",
    "unknown_name",
    "walk",
]


class Table(StrEnum):
    """The three lake tables, named as a query names them (`run.status`, `stage.type`)."""

    RUN = "run"
    STAGE = "stage"
    CANDIDATE = "candidate"

    @property
    def view(self) -> str:
        """The DuckDB view holding this table."""
        return _VIEWS[self]


_VIEWS: Final = {Table.RUN: "runs", Table.STAGE: "stages", Table.CANDIDATE: "candidates"}


class Kind(StrEnum):
    """What a column holds, which decides the values and operators it accepts."""

    NUM = "number"
    STR = "string"
    BOOL = "boolean"
    TIME = "timestamp"
    MAP = "map"


def _kind(field: pa.Field) -> Kind:
    t = field.type
    if pa.types.is_map(t):
        return Kind.MAP
    if pa.types.is_boolean(t):
        return Kind.BOOL
    if pa.types.is_timestamp(t):
        return Kind.TIME
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return Kind.NUM
    return Kind.STR


COLUMNS: Final[Mapping[Table, Mapping[str, Kind]]] = {
    table: {f.name: _kind(f) for f in table_schema(table.view)} for table in Table
}
"""Every queryable column of each table and its kind, read from the Arrow schemas."""

CmpOp: TypeAlias = Literal["=", "!=", ">", ">=", "<", "<="]
Per: TypeAlias = Literal["stage", "run"]
TimeLike: TypeAlias = "dt.datetime | dt.date | dt.timedelta | str"

_ORDERING_OPS: Final = frozenset({">", ">=", "<", "<="})
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def unknown_name(what: str, name: str, valid: Iterable[str], where: str = "") -> QueryError:
    """A QueryError for an unknown name: the nearest valid one (difflib) and the full list."""
    names = sorted(set(valid))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    place = f" in {where}" if where else ""
    return QueryError(f"unknown {what} {name!r}{place}.{hint} Valid: {', '.join(names)}.")


def parse_time(value: TimeLike, *, end_of_day: bool = False,
               now: dt.datetime | None = None) -> dt.datetime:
    """An aware UTC datetime from an ISO string, date, datetime, timedelta or '7d'/'24h'/'30m'.

    Relative values and timedeltas count back from `now`. Naive datetimes are taken as UTC.
    A bare date means its midnight, or the next midnight with `end_of_day` (so `$until` of a
    date includes that whole day). A time past the calendar's ends ('9999-12-31' as an
    `until`, '1000000000d') is a `QueryError`.
    """
    try:
        return _parse_time(value, end_of_day, now)
    except OverflowError:
        raise QueryError(
            f"time {value!r} is out of range: use a date between 0001-01-01 and 9999-12-30 "
            "or a relative time that stays after year 1 ('30m', '24h', '7d', '2w')"
        ) from None


def _parse_time(value: TimeLike, end_of_day: bool, now: dt.datetime | None) -> dt.datetime:
    if isinstance(value, dt.timedelta):
        return (now or dt.datetime.now(dt.UTC)) - value
    if isinstance(value, str):
        text = value.strip()
        if match := _RELATIVE.match(text):
            delta = dt.timedelta(**{_UNITS[match[2]]: float(match[1])})
            return (now or dt.datetime.now(dt.UTC)) - delta
        try:
            value = (dt.date.fromisoformat(text) if _DATE_ONLY.match(text)
                     else dt.datetime.fromisoformat(text))
        except ValueError:
            raise QueryError(
                f"cannot read time {value!r}: use an ISO date or datetime ('2024-05-01', "
                "'2024-05-01T12:00:00Z') or a relative time ('30m', '24h', '7d', '2w')"
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is dt.UTC:
            return value
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        day = value + dt.timedelta(days=1) if end_of_day else value
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    raise QueryError(f"cannot read time {value!r} of type {type(value).__name__}")


def _coerce(kind: Kind, value: object, what: str) -> object:
    """The value as the column's kind wants it, or a QueryError saying what was expected."""
    if kind is Kind.NUM and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind is Kind.BOOL and isinstance(value, bool):
        return value
    if kind is Kind.STR:
        if isinstance(value, str):
            return value
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()  # the `date` partition column holds 'YYYY-MM-DD'
    if kind is Kind.TIME and isinstance(value, dt.datetime | dt.date | str):
        return parse_time(value)
    raise QueryError(
        f"{what} is a {kind} column; cannot compare it with {type(value).__name__} {value!r}"
    )


def _bind(kind: Kind, param: Param, what: str) -> Param:
    """`param` checked for the column's kind; the same object when no conversion was needed.

    Keeping the object matters: the compiler binds one Param object once, however many
    places (e.g. a label filter copied onto every table scan) it appears in.
    """
    value = _coerce(kind, param.value, what)
    return param if value is param.value else Param(value)


# --------------------------------------------------------------------------- base


@dataclass(frozen=True, slots=True)
class Node:
    """Base of every query node; nodes are values (compared by content, never mutated)."""


@dataclass(frozen=True, slots=True)
class Expr(Node):
    """A value-producing node: a column or a map entry."""

    @property
    def kind(self) -> Kind:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Column(Expr):
    """A column of one table; unknown names raise with the nearest valid name."""

    table: Table
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.table, Table):
            try:
                object.__setattr__(self, "table", Table(self.table))
            except ValueError:
                raise unknown_name("table", str(self.table), (t.value for t in Table)) from None
        if self.name not in COLUMNS[self.table]:
            raise unknown_name("column", self.name, COLUMNS[self.table], self.table.view)

    @property
    def kind(self) -> Kind:
        return COLUMNS[self.table][self.name]

    @property
    def is_partition(self) -> bool:
        return self.name in PARTITION_COLUMNS

    def __str__(self) -> str:
        return f"{self.table}.{self.name}"


_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class PromotedColumn(Column):
    """A promoted candidate field: column `f_<name>` of `candidates`, of kind `field_kind`.

    Promoted columns exist only in lakes whose stages declared them (`fields=`), so they are
    not in COLUMNS: the JSON language reads them from the lake's views, the builder takes the
    kind from `candidate.field(name, type)` and checks it against the lake before running.
    """

    field_kind: Kind = Kind.STR

    def __post_init__(self) -> None:
        if self.table is not Table.CANDIDATE:
            raise QueryError(f"promoted fields are candidate columns, not {self.table} columns")
        name = self.name.removeprefix(PROMOTED_PREFIX)
        if not self.name.startswith(PROMOTED_PREFIX) or not _FIELD_NAME.match(name):
            raise QueryError(f"{self.name!r} is not a promoted field column: they are named "
                             f"{PROMOTED_PREFIX}<name>, <name> as given in fields= on the stage")
        if self.field_kind not in (Kind.NUM, Kind.STR, Kind.BOOL, Kind.TIME):
            raise QueryError(f"a promoted field holds numbers, strings, booleans or times, "
                             f"not {self.field_kind}")

    @classmethod
    def named(cls, name: str, kind: Kind) -> PromotedColumn:
        """The promoted field `name` (as given in fields=), stored as column `f_<name>`."""
        return cls(Table.CANDIDATE, PROMOTED_PREFIX + name, kind)

    @property
    def kind(self) -> Kind:
        return self.field_kind

    @property
    def is_partition(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class MapItem(Expr):
    """One entry of a map column: `metrics['ndcg']` or `reason_counts['price_too_high']`."""

    column: Column
    key: str

    def __post_init__(self) -> None:
        if self.column.kind is not Kind.MAP:
            maps = [n for n, k in COLUMNS[self.column.table].items() if k is Kind.MAP]
            raise QueryError(
                f"{self.column} is not a map column; map columns: {', '.join(maps) or 'none'}"
            )
        if not isinstance(self.key, str):
            raise QueryError(f"{self.column} keys are strings, got {self.key!r}")

    @property
    def kind(self) -> Kind:
        return Kind.NUM

    def __str__(self) -> str:
        return f"{self.column}[{self.key!r}]"


@dataclass(frozen=True, slots=True)
class Param(Node):
    """A value bound as a query parameter; the compiler never pastes it into SQL text."""

    value: object


# --------------------------------------------------------------------------- predicates


@dataclass(frozen=True, slots=True)
class Predicate(Node):
    """A condition; combine with `&`, `|` and `~` (Python's `and`/`or`/`not` cannot be used)."""

    def __and__(self, other: Predicate) -> And:
        return And((self, other))

    def __or__(self, other: Predicate) -> Or:
        return Or((self, other))

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> NoReturn:
        raise QueryError(
            "a query condition has no truth value: combine conditions with & | ~ "
            "(not and/or/not), and write a < col < b as (col > a) & (col < b)"
        )


def _check_expr(expr: object, what: str) -> Expr:
    if not isinstance(expr, Expr):
        raise QueryError(f"{what} needs a column, got {expr!r}")
    return expr


@dataclass(frozen=True, slots=True)
class Compare(Predicate):
    """`left op value` for `= != > >= < <=`; the value must suit the column's kind."""

    left: Expr
    op: CmpOp
    value: Param

    def __post_init__(self) -> None:
        _check_expr(self.left, f"comparison {self.op!r}")
        if self.op not in get_args(CmpOp):
            raise unknown_name("comparison operator", str(self.op), get_args(CmpOp))
        kind = self.left.kind
        if kind is Kind.MAP:
            raise QueryError(f"{self.left} is a map: compare one entry, e.g. {self.left}['name']")
        if self.value.value is None:
            raise QueryError(f"{self.left} {self.op} None: use an IS NULL / $exists test instead")
        if self.op in _ORDERING_OPS and kind is Kind.BOOL:
            raise QueryError(f"{self.left} is a boolean column: only = and != apply")
        object.__setattr__(self, "value", _bind(kind, self.value, str(self.left)))


@dataclass(frozen=True, slots=True)
class InList(Predicate):
    """`left [NOT] IN (values...)`; an empty list matches nothing (or everything, negated)."""

    left: Expr
    values: tuple[Param, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        _check_expr(self.left, "IN")
        if self.left.kind is Kind.MAP:
            raise QueryError(f"{self.left} is a map: test one entry, e.g. {self.left}['name']")
        if any(p.value is None for p in self.values):
            raise QueryError(f"{self.left} IN (...) cannot hold None: test nulls separately")
        coerced = tuple(_bind(self.left.kind, p, str(self.left)) for p in self.values)
        object.__setattr__(self, "values", coerced)


@dataclass(frozen=True, slots=True)
class IsNull(Predicate):
    """`left IS [NOT] NULL`; for a map entry, whether the key is present."""

    left: Expr
    negated: bool = False

    def __post_init__(self) -> None:
        _check_expr(self.left, "IS NULL")


@dataclass(frozen=True, slots=True)
class Regex(Predicate):
    """The string column contains a match of `pattern` (RE2 syntax, as DuckDB's regexp_matches)."""

    left: Expr
    pattern: Param

    def __post_init__(self) -> None:
        _check_expr(self.left, "regex")
        if self.left.kind is not Kind.STR:
            raise QueryError(f"{self.left} is a {self.left.kind} column: regex needs a string")
        if not isinstance(self.pattern.value, str):
            raise QueryError(f"regex pattern for {self.left} must be a string, "
                             f"got {self.pattern.value!r}")


def _check_items(items: object, what: str) -> tuple[Predicate, ...]:
    if not isinstance(items, tuple) or not all(isinstance(i, Predicate) for i in items):
        raise QueryError(f"{what} takes a tuple of conditions, got {items!r}")
    return items


@dataclass(frozen=True, slots=True)
class And(Predicate):
    """All items hold (an empty And is true)."""

    items: tuple[Predicate, ...]

    def __post_init__(self) -> None:
        _check_items(self.items, "AND")


@dataclass(frozen=True, slots=True)
class Or(Predicate):
    """At least one item holds (an empty Or is false)."""

    items: tuple[Predicate, ...]

    def __post_init__(self) -> None:
        _check_items(self.items, "OR")


@dataclass(frozen=True, slots=True)
class Not(Predicate):
    """The item does not hold."""

    item: Predicate

    def __post_init__(self) -> None:
        if not isinstance(self.item, Predicate):
            raise QueryError(f"NOT takes a condition, got {self.item!r}")


@dataclass(frozen=True, slots=True)
class TimeBound(Predicate):
    """`since <= started_at < until` on a run or stage (UTC); both ends optional.

    A bound on runs also bounds the `date` partition on both sides; one on stages bounds it
    only from above (a stage starts no earlier than its run, which may be the day before).
    """

    table: Table
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.table not in (Table.RUN, Table.STAGE):
            raise QueryError(f"time bounds apply to runs or stages, not {self.table}s")
        if self.since is None and self.until is None:
            raise QueryError("a time bound needs since, until or both")
        for bound in (self.since, self.until):
            if bound is not None and (not isinstance(bound, dt.datetime) or bound.tzinfo is None):
                raise QueryError(f"time bounds are aware datetimes, got {bound!r}: "
                                 "build them with TimeBound.of()")

    @classmethod
    def of(cls, table: Table, since: TimeLike | None = None,
           until: TimeLike | None = None) -> TimeBound:
        """Parse `since` / `until` with `parse_time` (a bare-date `until` includes that day)."""
        return cls(table,
                   None if since is None else parse_time(since),
                   None if until is None else parse_time(until, end_of_day=True))

    def partition_bounds(self) -> tuple[str | None, str | None]:
        """Inclusive (low, high) bounds on the `date` partition implied by this bound."""
        low = self.since.date().isoformat() if self.since and self.table is Table.RUN else None
        return low, _last_day(self.until) if self.until else None


def _last_day(until: dt.datetime) -> str:
    """The last date partition before `until` (exclusive); before the calendar, none."""
    try:
        return (until - dt.timedelta(microseconds=1)).date().isoformat()
    except OverflowError:  # until is the first instant of year 1
        return "0000-12-31"  # sorts before every date=YYYY-MM-DD folder


@dataclass(frozen=True, slots=True)
class HasCandidate(Predicate):
    """The stage has at least one candidate for which `where` holds (compiled as EXISTS)."""

    where: Predicate

    def __post_init__(self) -> None:
        if not isinstance(self.where, Predicate):
            raise QueryError(f"a candidate clause takes a condition, got {self.where!r}")
        for node in walk(self.where):
            if isinstance(node, HasCandidate | TimeBound):
                raise QueryError(f"a candidate clause cannot hold {type(node).__name__}")
            if isinstance(node, Column) and node.table is not Table.CANDIDATE:
                raise QueryError(
                    f"a candidate clause may only test candidate columns, not {node}"
                )


# --------------------------------------------------------------------------- walking


def walk(node: Node, *, into_candidates: bool = True) -> Iterator[Node]:
    """The node and all its descendants, depth first (optionally not inside HasCandidate)."""
    yield node
    if isinstance(node, HasCandidate) and not into_candidates:
        return
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, Node):
                yield from walk(child, into_candidates=into_candidates)


def columns_of(node: Node, *, into_candidates: bool = True) -> Iterator[Column]:
    """The columns a node reads."""
    return (n for n in walk(node, into_candidates=into_candidates) if isinstance(n, Column))


N = TypeVar("N", bound=Node)


def transform(node: N, fn: Callable[[Node], Node | None]) -> N:
    """A copy of `node` with every descendant for which `fn` returns a node replaced by it."""
    replaced = fn(node)
    if replaced is not None:
        return replaced  # type: ignore[return-value]
    changes: dict[str, object] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            new: object = transform(value, fn)
        elif isinstance(value, tuple) and any(isinstance(v, Node) for v in value):
            new = tuple(transform(v, fn) if isinstance(v, Node) else v for v in value)
        else:
            continue
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node


# --------------------------------------------------------------------------- query


@dataclass(frozen=True, slots=True)
class Order(Node):
    """One ORDER BY key (nulls always last)."""

    expr: Expr
    descending: bool = False

    def __post_init__(self) -> None:
        _check_expr(self.expr, "ORDER BY")
        if self.expr.kind is Kind.MAP:
            raise QueryError(f"cannot order by the map {self.expr}: order by one entry")


def output_name(expr: Expr, per: Per) -> str:
    """The result column name of a selected expression.

    Per stage, run columns are prefixed `run_` (`run_status`), except the shared keys
    `run_id`, `label` and `date`; map entries are named `metrics.<key>` / `reason_counts.<key>`.
    """
    if isinstance(expr, MapItem):
        return f"{expr.column.name}.{expr.key}"
    if isinstance(expr, Column):
        if per == "stage" and expr.table is Table.RUN and expr.name not in _SHARED:
            return f"run_{expr.name}"
        return expr.name
    raise QueryError(f"cannot name output expression {expr!r}")


_SHARED: Final = frozenset({"run_id", *PARTITION_COLUMNS})


@dataclass(frozen=True, slots=True)
class Query(Node):
    """A whole query: conditions (all must hold), result grain, projection, order and limit."""

    where: tuple[Predicate, ...] = ()
    per: Per = "stage"
    select: tuple[Expr, ...] = ()
    order_by: tuple[Order, ...] = ()
    limit: int | None = None

    def __post_init__(self) -> None:
        _check_items(self.where, "where")
        if self.per not in get_args(Per):
            raise unknown_name("result grain per", str(self.per), get_args(Per))
        if self.limit is not None and (
            not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 0
        ):
            raise QueryError(f"limit must be a non-negative int, got {self.limit!r}")
        for pred in self.where:
            for col in columns_of(pred, into_candidates=False):
                if col.table is Table.CANDIDATE:
                    raise QueryError(
                        f"{col} can only be tested inside a candidate clause (HasCandidate): "
                        "it matches stages that have such a candidate"
                    )
        allowed = {Table.RUN} if self.per == "run" else {Table.RUN, Table.STAGE}
        names: set[str] = set()
        for expr in (*self.select, *(o.expr for o in self.order_by)):
            _check_expr(expr, "select / order_by")
            for col in columns_of(expr):
                if col.table not in allowed:
                    raise QueryError(
                        f"a per-{self.per} result has no {col}: select and order by "
                        f"{' or '.join(sorted(t.value for t in allowed))} columns"
                    )
        for expr in self.select:
            if expr.kind is Kind.MAP and not isinstance(expr, Column):
                raise QueryError(f"cannot select {expr}")
            name = output_name(expr, self.per)
            if name in names:
                raise QueryError(f"two selected expressions are both named {name!r}")
            names.add(name)
