"""The one query compiler: query nodes -> a sqlglot tree -> DuckDB SQL with every value bound.

Result shapes:

* ``per="stage"`` — ``stages AS s LEFT JOIN runs AS r``: every stage column (``s.*``), then
  the run's columns prefixed ``run_`` (``run_started_at``, ``run_status``, ...; the shared keys
  ``run_id``, ``label``, ``date`` are not repeated). Ordered by the stage's start time.
* ``per="run"`` — ``runs AS r`` joined to a ``matching`` CTE that counts the matching stages of
  each run: every run column (``r.*``), then ``n_matching_stages``. Runs need at least one
  matching stage when the query tests stage or candidate columns. Ordered by start time.

A candidate clause becomes ``EXISTS (SELECT 1 FROM candidates AS c WHERE <same run, stage,
label, date> AND ...)``. Conditions are two-valued: a comparison with a null is false and its
negation (``!=``, ``NOT IN``, ``NOT``) is true, as in MongoDB.

Partition pruning: every top-level condition that reads only ``label`` / ``date`` (from any
table), and the date range implied by a time bound, is repeated on *each* table scanned, so
DuckDB's Hive filter pushdown skips the other folders of every table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sqlglot import exp

from xray_lake.errors import QueryError
from xray_lake.query.nodes import (
    COLUMNS,
    PARTITION_COLUMNS,
    And,
    Column,
    Compare,
    Expr,
    HasCandidate,
    InList,
    IsNull,
    Kind,
    MapItem,
    Node,
    Not,
    Or,
    Order,
    Param,
    Predicate,
    Query,
    Regex,
    Table,
    TimeBound,
    output_name,
    transform,
    walk,
)

__all__ = ["N_MATCHING_STAGES", "RUN_PREFIX", "CompiledQuery", "UnknownNodeError",
           "compile_query"]

ALIASES: Final = {Table.RUN: "r", Table.STAGE: "s", Table.CANDIDATE: "c"}
MATCHING: Final = "matching"
N_MATCHING_STAGES: Final = "n_matching_stages"
RUN_PREFIX: Final = "run_"
_JOIN_KEYS: Final = ("run_id", *PARTITION_COLUMNS)
_CMP: Final[dict[str, type[exp.Binary]]] = {
    "=": exp.EQ, "!=": exp.NullSafeNEQ, ">": exp.GT, ">=": exp.GTE, "<": exp.LT, "<=": exp.LTE,
}


class UnknownNodeError(QueryError):
    """The compiler met a node type it has no rule for (a front-end bug or a foreign node)."""


@dataclass(frozen=True)
class CompiledQuery:
    """DuckDB SQL text and its positional parameters (`$1` is `params[0]`).

    `tree` is shared by every compilation of an equal query (see `compile_query`): copy it
    before changing it."""

    sql: str
    params: tuple[object, ...]
    tree: exp.Select = field(compare=False, repr=False)


def compile_query(query: Query, *, pretty: bool = True) -> CompiledQuery:
    """Compile a query node to DuckDB SQL; values only ever appear in `params`.

    Compiling (sqlglot) costs about as much as the headline question's scan of an in-memory
    `stages`, so the result is kept for the `_CACHE_SIZE` latest queries. Nodes are frozen
    and time bounds are absolute, so a node compiles to the same SQL every time; the key is
    the node and its repr (`==` alone would take `True` for `1`, or 00:30+01:00 for 23:30Z).
    """
    if not isinstance(query, Query):
        raise UnknownNodeError(f"compile_query takes a Query node, got {type(query).__name__}")
    try:
        key = (query, repr(query), pretty)
        hit = _COMPILED.get(key)
    except TypeError:  # an unhashable value somewhere in the node: no caching
        return _Compiler(query).compile(pretty=pretty)
    if hit is None:
        hit = _Compiler(query).compile(pretty=pretty)
        while len(_COMPILED) >= _CACHE_SIZE:
            _COMPILED.pop(next(iter(_COMPILED)), None)
        _COMPILED[key] = hit
    return hit


_CACHE_SIZE: Final = 256
_COMPILED: dict[tuple[Query, str, bool], CompiledQuery] = {}


def _col(table: Table | str, name: str) -> exp.Column:
    alias = ALIASES[table] if isinstance(table, Table) else table
    return exp.column(name, table=alias)


def _table(table: Table) -> exp.Table:
    return exp.Table(this=exp.to_identifier(table.view),
                     alias=exp.TableAlias(this=exp.to_identifier(ALIASES[table])))


def _and(conditions: list[exp.Expr]) -> exp.Expr | None:
    if not conditions:
        return None
    return exp.and_(*conditions, copy=False) if len(conditions) > 1 else conditions[0]


def _all(conditions: list[exp.Expr]) -> exp.Expr:
    """AND of the conditions; TRUE for none."""
    combined = _and(conditions)
    return exp.true() if combined is None else combined


def _keys_match(left: Table | str, right: Table | str, keys: tuple[str, ...]) -> list[exp.Expr]:
    return [_col(left, k).eq(_col(right, k)) for k in keys]


def _retarget(pred: Predicate, table: Table) -> Predicate:
    """The partition-only condition `pred`, reading `label` / `date` of `table` instead."""
    return transform(pred, lambda n: Column(table, n.name) if isinstance(n, Column) else None)


def _is_partition_only(pred: Predicate) -> bool:
    nodes = list(walk(pred))
    cols = [n for n in nodes if isinstance(n, Column)]
    return bool(cols) and all(c.is_partition for c in cols) and not any(
        isinstance(n, TimeBound | HasCandidate) for n in nodes
    )


def _conjuncts(preds: tuple[Predicate, ...]) -> list[Predicate]:
    out: list[Predicate] = []
    for pred in preds:
        out.extend(_conjuncts(pred.items) if isinstance(pred, And) else [pred])
    return out


def _reads_run(pred: Predicate) -> bool:
    return any(
        (isinstance(n, Column) and n.table is Table.RUN)
        or (isinstance(n, TimeBound) and n.table is Table.RUN)
        for n in walk(pred, into_candidates=False)
    )


def _run_only(pred: Predicate) -> bool:
    """Reads no stage or candidate data (so, per run, it filters the outer `runs` scan)."""
    return not any(
        (isinstance(n, Column) and n.table is not Table.RUN)
        or isinstance(n, HasCandidate)
        or (isinstance(n, TimeBound) and n.table is not Table.RUN)
        for n in walk(pred)
    )


class _Compiler:
    """Compiles one query; holds the parameter list while the tree is built."""

    def __init__(self, query: Query) -> None:
        self.query = query
        self.params: list[object] = []
        self._slot: dict[int, int] = {}
        self._keep: list[Param] = []  # keeps every bound Param alive, so ids stay unique
        self.partition: list[Predicate] = []
        self.rest: list[Predicate] = []
        for pred in _conjuncts(query.where):
            if _is_partition_only(pred):
                self.partition.append(pred)
                continue
            self.rest.append(pred)
            if isinstance(pred, TimeBound):
                low, high = pred.partition_bounds()
                date = Column(Table.RUN, "date")
                if low is not None:
                    self.partition.append(Compare(date, ">=", Param(low)))
                if high is not None:
                    self.partition.append(Compare(date, "<=", Param(high)))

    # --- values --------------------------------------------------------------------------

    def bind(self, param: Param) -> exp.Placeholder:
        """`$n` for this Param object; the same object always gets the same number."""
        slot = self._slot.get(id(param))
        if slot is None:
            self._keep.append(param)
            self.params.append(param.value)
            slot = self._slot[id(param)] = len(self.params)
        return exp.Placeholder(this=str(slot))

    def value(self, expr: Expr, param: Param) -> exp.Expr:
        placeholder = self.bind(param)
        return exp.cast(placeholder, "TIMESTAMPTZ") if expr.kind is Kind.TIME else placeholder

    # --- nodes ---------------------------------------------------------------------------

    def expr(self, node: Node) -> exp.Expr:
        match node:
            case Column(table=table, name=name):
                return _col(table, name)
            case MapItem(column=col, key=key):
                return exp.Bracket(this=self.expr(col), expressions=[self.bind(Param(key))])
        raise UnknownNodeError(f"no SQL rule for expression node {type(node).__name__}: {node!r}")

    def pred(self, node: Node) -> exp.Expr:
        match node:
            case Compare(left=left, op=op, value=value):
                return _CMP[op](this=self.expr(left), expression=self.value(left, value))
            case InList(left=left, values=values, negated=negated):
                if not values:
                    return exp.true() if negated else exp.false()
                among = exp.In(this=self.expr(left),
                               expressions=[self.value(left, v) for v in values])
                return self.negate(among) if negated else among
            case IsNull(left=left, negated=negated):
                null = exp.Is(this=self.expr(left), expression=exp.Null())
                return exp.Not(this=null) if negated else null
            case Regex(left=left, pattern=pattern):
                return exp.RegexpLike(this=self.expr(left), expression=self.bind(pattern))
            case And(items=items):
                return _all([self.pred(i) for i in items])
            case Or(items=items):
                if not items:
                    return exp.false()
                parts = [self.pred(i) for i in items]
                return exp.paren(exp.or_(*parts, copy=False), copy=False) if len(parts) > 1 \
                    else parts[0]
            case Not(item=item):
                return self.negate(self.pred(item))
            case TimeBound():
                return _all(self.time_bounds(node))
            case HasCandidate(where=where):
                return self.exists_candidate(where)
        raise UnknownNodeError(f"no SQL rule for condition node {type(node).__name__}: {node!r}")

    def time_bounds(self, node: TimeBound) -> list[exp.Expr]:
        started = Column(node.table, "started_at")
        bounds: list[exp.Expr] = []
        if node.since is not None:
            bounds.append(exp.GTE(this=self.expr(started),
                                  expression=self.value(started, Param(node.since))))
        if node.until is not None:
            bounds.append(exp.LT(this=self.expr(started),
                                 expression=self.value(started, Param(node.until))))
        return bounds

    def conditions(self, preds: list[Predicate]) -> list[exp.Expr]:
        """Top-level conditions, a time bound's two ends as two conjuncts."""
        out: list[exp.Expr] = []
        for p in preds:
            out.extend(self.time_bounds(p) if isinstance(p, TimeBound) else [self.pred(p)])
        return out

    @staticmethod
    def negate(test: exp.Expr) -> exp.Expr:
        """Two-valued NOT: true when `test` is false or null."""
        return exp.Not(this=exp.Coalesce(this=test, expressions=[exp.false()]))

    def scan_filters(self, table: Table) -> list[exp.Expr]:
        """The partition-only conditions, read against `table` (for Hive pruning of its scan)."""
        return [self.pred(_retarget(p, table)) for p in self.partition]

    def exists_candidate(self, where: Predicate) -> exp.Expr:
        c, s = Table.CANDIDATE, Table.STAGE
        conditions = [*_keys_match(c, s, ("run_id", "stage_id", *PARTITION_COLUMNS)),
                      *self.scan_filters(c), *(self.pred(p) for p in _conjuncts((where,)))]
        sub = exp.Select(expressions=[exp.Literal.number(1)]).from_(_table(c), copy=False)
        return exp.Exists(this=sub.where(_and(conditions), copy=False))

    # --- queries -------------------------------------------------------------------------

    def compile(self, *, pretty: bool) -> CompiledQuery:
        tree = self.per_stage() if self.query.per == "stage" else self.per_run()
        order = self.query.order_by
        if order:
            tree = tree.order_by(*(self.order(o) for o in order), copy=False)
        if self.query.per == "stage":
            tree = self.join_runs_if_used(tree)
        if self.query.limit is not None:
            tree = tree.limit(self.bind(Param(self.query.limit)), copy=False)
        sql = tree.sql(dialect="duckdb", pretty=pretty)
        return CompiledQuery(sql, tuple(self.params), tree)

    def order(self, order: Order) -> exp.Ordered:
        return exp.Ordered(this=self.expr(order.expr), desc=order.descending, nulls_first=False)

    def projection(self, default: list[exp.Expr]) -> list[exp.Expr]:
        if not self.query.select:
            return default
        out: list[exp.Expr] = []
        for expr in self.query.select:
            sql, name = self.expr(expr), output_name(expr, self.query.per)
            keep = isinstance(expr, Column) and name == expr.name
            out.append(sql if keep else exp.alias_(sql, name, quoted=isinstance(expr, MapItem)))
        return out

    def per_stage(self) -> exp.Select:
        r, s = Table.RUN, Table.STAGE
        run_columns = [
            exp.alias_(_col(r, name), RUN_PREFIX + name)
            for name in COLUMNS[r] if name not in _JOIN_KEYS
        ]
        select = exp.Select(expressions=self.projection(
            [exp.Column(this=exp.Star(), table=exp.to_identifier(ALIASES[s])), *run_columns]
        ))
        select = select.from_(_table(s), copy=False)
        where = _and([*self.scan_filters(s), *self.conditions(self.rest)])
        if where is not None:
            select = select.where(where, copy=False)
        if not self.query.order_by:
            select = select.order_by(*(_col(s, k) for k in ("started_at", "run_id", "seq")),
                                     copy=False)
        return select

    def join_runs_if_used(self, select: exp.Select) -> exp.Select:
        """Join `runs` only when the query reads a run column: a stage-only question (the
        headline one with a projection) then scans nothing but `stages`."""
        r, s = Table.RUN, Table.STAGE
        alias = ALIASES[r]
        if not any(col.table == alias for col in select.find_all(exp.Column)):
            return select
        on = _and([*_keys_match(r, s, _JOIN_KEYS), *self.scan_filters(r)])
        return select.join(exp.Join(this=_table(r), side="LEFT", on=on), copy=False)

    def per_run(self) -> exp.Select:
        r, s = Table.RUN, Table.STAGE
        outer = [p for p in self.rest if _run_only(p)]
        inner = [p for p in self.rest if not _run_only(p)]
        # The CTE first, so that `$n` numbers read in order down the SQL text.
        matching = exp.Select(expressions=[
            *(_col(s, k) for k in _JOIN_KEYS),
            exp.alias_(exp.Count(this=exp.Star()), N_MATCHING_STAGES),
        ]).from_(_table(s), copy=False)
        if any(_reads_run(p) for p in inner):
            on = _and([*_keys_match(r, s, _JOIN_KEYS), *self.scan_filters(r)])
            matching = matching.join(exp.Join(this=_table(r), on=on), copy=False)
        where = _and([*self.scan_filters(s), *self.conditions(inner)])
        if where is not None:
            matching = matching.where(where, copy=False)
        matching = matching.group_by(*(_col(s, k) for k in _JOIN_KEYS), copy=False)

        count: exp.Expr = _col(MATCHING, N_MATCHING_STAGES)
        if not inner:  # every run qualifies, even one with no stage at all
            count = exp.alias_(exp.Coalesce(this=count, expressions=[exp.Literal.number(0)]),
                               N_MATCHING_STAGES)
        select = exp.Select(expressions=self.projection([
            exp.Column(this=exp.Star(), table=exp.to_identifier(ALIASES[r])), count,
        ]))
        select = select.with_(MATCHING, as_=matching, copy=False).from_(_table(r), copy=False)
        join = exp.Join(this=exp.to_table(MATCHING), on=_and(_keys_match(MATCHING, r, _JOIN_KEYS)))
        if not inner:
            join.set("side", "LEFT")
        select = select.join(join, copy=False)
        where = _and([*self.scan_filters(r), *self.conditions(outer)])
        if where is not None:
            select = select.where(where, copy=False)
        if not self.query.order_by:
            select = select.order_by(_col(r, "started_at"), _col(r, "run_id"), copy=False)
        return select
