"""The original design's JSON query language, parsed into query nodes and run by the one compiler.

    {"pipeline": {"label": "competitor_discovery"},
     "stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}},
     "candidate": {"candidate_id": "42", "passed": False},
     "$since": "7d"}

* Top-level keys: `pipeline` (runs), `stage`, `candidate` (matches stages having at least one
  such candidate), `$since` / `$until` (the run's start), and `$and` / `$or` / `$not` over
  whole query documents.
* Inside a clause: plain keys are columns (in a candidate clause also the promoted fields
  the lake holds: `price` or `f_price` for a stage's `fields={"price": ...}`); `$camelCase` keys are metrics (`$failRatio` ->
  `fail_ratio`, `$nIn`, `$durationMs`, ...; for a pipeline `$durationMs`, `$nStages`);
  `$metrics.<name>` is a plugin metric; `$reasonCounts.<label>` one reason's count;
  `$and` / `$or` (lists of clauses), `$not` (a clause); `$since` / `$until` in a pipeline or
  stage clause bound that table's `started_at`.
* Values: a bare value means `$eq` (None: is null); or an object of operators, all of which
  must hold: `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $not`.
* Times: ISO date or datetime strings (naive = UTC), `datetime` / `date` objects, or relative
  ('30m', '24h', '7d', '2w' ago). `$since` is inclusive, `$until` exclusive; a bare date as
  `$until` includes that whole day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, get_args

import polars as pl

from xray_lake.errors import QueryError
from xray_lake.query.compiler import CompiledQuery, compile_query
from xray_lake.query.nodes import (
    COLUMNS,
    And,
    Column,
    Compare,
    Expr,
    HasCandidate,
    InList,
    IsNull,
    Kind,
    MapItem,
    Not,
    Or,
    Param,
    Per,
    Predicate,
    PromotedColumn,
    Query,
    Regex,
    Table,
    TimeBound,
    output_name,
    parse_time,
    unknown_name,
    walk,
)
from xray_lake.query.projection import ALL, DEFAULT, resolve
from xray_lake.query.promoted_fields import field_names, promoted_columns
from xray_lake.records.metrics import METRIC_COLUMNS
from xray_lake.records.promoted import PROMOTED_PREFIX

if TYPE_CHECKING:
    from xray_lake.query.lake import Lake

__all__ = ["METRIC_KEYS", "OPERATORS", "TOP_LEVEL_KEYS", "compile_find", "find", "parse"]

CLAUSES: Final = {"pipeline": Table.RUN, "stage": Table.STAGE, "candidate": Table.CANDIDATE}
TIME_KEYS: Final = ("$since", "$until")
LOGIC_KEYS: Final = ("$and", "$or", "$not")
TOP_LEVEL_KEYS: Final = (*CLAUSES, *TIME_KEYS, *LOGIC_KEYS)
OPERATORS: Final = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
                    "$regex", "$not")
_COMPARISONS: Final = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<",
                       "$lte": "<="}
_MAP_KEYS: Final = {"$metrics.": "metrics", "$reasonCounts.": "reason_counts"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


METRIC_KEYS: Final[Mapping[Table, Mapping[str, str]]] = {
    Table.STAGE: {f"${_camel(n)}": n for n in ("n_in", "n_out", "duration_ms", *METRIC_COLUMNS)},
    Table.RUN: {"$durationMs": "duration_ms", "$nStages": "n_stages"},
    Table.CANDIDATE: {},
}
"""`$camelCase` keys each clause accepts, and the column each one names."""


def find(lake: Lake, query: Mapping[str, Any], *, per: str = "stage",
         columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Run a JSON query; one row per matching stage (or per run).

    By default a narrow projection (`columns.DEFAULT`): per stage run_id, label, date,
    stage_id, name, type, n_in, n_out, n_passed, n_failed, fail_ratio, pass_ratio; per run
    run_id, label, date, started_at, status, n_stages, n_matching_stages, input_json.
    `columns="all"`: per stage every stage column, then the run's prefixed `run_`
    (`run_status`, ...); per run every run column, then `n_matching_stages`. A list of
    those names keeps only them, which reads only those from the lake. Raises QueryError
    on unknown keys.
    """
    try:  # promoted fields are read from the views only if a candidate key needs them
        compiled = compile_find(query, per=per, fields=lambda: promoted_columns(lake),
                                columns=columns)
    except _UnknownCandidateKey:  # maybe promoted by files newer than the views: look again
        lake.refresh()
        compiled = compile_find(query, per=per, fields=promoted_columns(lake), columns=columns)
    return lake.sql(compiled.sql, list(compiled.params))


def compile_find(query: Mapping[str, Any], *, per: str = "stage",
                 now: dt.datetime | None = None,
                 fields: Fields | None = None,
                 columns: Sequence[str] | None = None) -> CompiledQuery:
    """The SQL and parameters `find` would run (for `--explain`-style output and tests).

    `fields`: the promoted candidate columns (`f_price` -> kind) candidate keys may name, or
    a function returning them (called only when a candidate key is not a fixed column)."""
    node = parse(query, per=per, now=now, fields=fields)
    if columns == ALL:
        return compile_query(node)
    if columns is not None:
        return compile_query(dataclasses.replace(node, select=resolve(columns, node.per)))
    wanted = [*DEFAULT[node.per]]
    wanted += [name for name in _tested(node) if name not in wanted]
    if node.per == "run":
        return _narrow_runs(compile_query(node), wanted)
    return compile_query(dataclasses.replace(node, select=resolve(wanted, node.per)))


def _tested(node: Query) -> list[str]:
    """Result names of the columns the query's conditions test outside candidate clauses
    (`rank_kendall_tau`, `run_status`, `metrics.ndcg`), so the default projection shows them."""
    names: list[str] = []
    for pred in node.where:
        for item in walk(pred, into_candidates=False):
            if (isinstance(item, Column) and item.kind is not Kind.MAP) or (
                    isinstance(item, MapItem) and node.per == "stage"):
                table = item.table if isinstance(item, Column) else item.column.table
                if node.per == "stage" or table is Table.RUN:
                    names.append(output_name(item, node.per))
    return list(dict.fromkeys(names))


def _narrow_runs(wide: CompiledQuery, names: Sequence[str]) -> CompiledQuery:
    """Per run, `names` of the full result (`n_matching_stages` among them, which no select
    can name): the whole query as a subquery, of which DuckDB reads only these columns."""
    from sqlglot import exp

    inner = wide.tree.copy()
    inner.set("order", None)  # the outer query orders
    tree = (exp.select(*(exp.column(name) for name in names))
            .from_(inner.subquery("found"))
            .order_by(exp.column("started_at"), exp.column("run_id")))
    return CompiledQuery(tree.sql(dialect="duckdb", pretty=True), wide.params, tree)


def parse(query: Mapping[str, Any], *, per: str = "stage",
          now: dt.datetime | None = None, fields: Fields | None = None) -> Query:
    """The query node for a JSON query; `now` anchors relative times ('7d')."""
    if per not in get_args(Per):
        raise unknown_name("per", str(per), get_args(Per))
    parser = _Parser(now or dt.datetime.now(dt.UTC), fields or {})
    return Query(where=tuple(parser.top(query, "query")), per=per)  # type: ignore[arg-type]


Fields = Mapping[str, Kind] | Callable[[], Mapping[str, Kind]]
"""Promoted candidate columns (`f_price` -> kind), or a function that reads them."""


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise QueryError(f"{where} must be an object ({{...}}), got {type(value).__name__} "
                         f"{value!r}")
    for key in value:
        if not isinstance(key, str):
            raise QueryError(f"{where}: keys must be strings, got {key!r}")
    return value


def _sequence(value: object, where: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise QueryError(f"{where} takes a list, got {type(value).__name__} {value!r}")
    return list(value)


class _UnknownCandidateKey(QueryError):
    """A candidate clause names a column the views do not have (yet)."""


class _Parser:
    """Turns JSON query documents into predicate nodes; `now` fixes relative times; `fields`
    are the lake's promoted candidate columns (`f_price` -> kind)."""

    def __init__(self, now: dt.datetime, fields: Fields) -> None:
        self.now = now
        self._fields = fields

    @functools.cached_property
    def fields(self) -> Mapping[str, Kind]:
        return self._fields() if callable(self._fields) else self._fields

    def column(self, table: Table, key: str, where: str) -> Column:
        """A plain key: a fixed column, or (candidates) a promoted field by `price` / `f_price`."""
        if key in COLUMNS[table]:
            return Column(table, key)
        if table is not Table.CANDIDATE:
            raise unknown_name("column", key, COLUMNS[table], where)
        for name in (PROMOTED_PREFIX + key, key):
            if name in self.fields:
                return PromotedColumn(table, name, self.fields[name])
        error = unknown_name("column", key, [*COLUMNS[table], *field_names(self.fields)], where)
        raise _UnknownCandidateKey(str(error))

    def time_bound(self, table: Table, doc: Mapping[str, Any], where: str) -> TimeBound:
        def read(key: str) -> dt.datetime | None:
            if key not in doc:
                return None
            value = doc[key]
            if not isinstance(value, str | dt.date | dt.timedelta):
                raise QueryError(f"{where}.{key} takes a time ('2024-05-01', '7d', a datetime)"
                                 f", got {value!r}")
            return parse_time(value, end_of_day=key == "$until", now=self.now)

        return TimeBound(table, read("$since"), read("$until"))

    def logic(self, key: str, value: object, where: str,
              parse: Callable[[object, str], list[Predicate]]) -> Predicate:
        """`$and` / `$or` (lists of documents) and `$not` (one document) via `parse`."""
        path = f"{where}.{key}"
        if key == "$not":
            return Not(And(tuple(parse(value, path))))
        items = tuple(And(tuple(parse(item, f"{path}[{i}]")))
                      for i, item in enumerate(_sequence(value, path)))
        return And(items) if key == "$and" else Or(items)

    def top(self, doc: object, where: str) -> list[Predicate]:
        doc = _mapping(doc, where)
        preds: list[Predicate] = []
        for key, value in doc.items():
            if key in CLAUSES:
                table = CLAUSES[key]
                clause = self.clause(table, value, f"{where}.{key}" if where != "query" else key)
                preds.append(HasCandidate(And(tuple(clause))) if table is Table.CANDIDATE
                             else And(tuple(clause)) if len(clause) != 1 else clause[0])
            elif key in LOGIC_KEYS:
                preds.append(self.logic(key, value, where, self.top))
            elif key not in TIME_KEYS:
                raise unknown_name("top-level key", key, TOP_LEVEL_KEYS, where)
        if any(k in doc for k in TIME_KEYS):
            preds.append(self.time_bound(Table.RUN, doc, where))
        return preds

    def clause(self, table: Table, doc: object, where: str) -> list[Predicate]:
        doc = _mapping(doc, where)
        preds: list[Predicate] = []
        for key, spec in doc.items():
            path = f"{where}.{key}"
            if key in LOGIC_KEYS:
                preds.append(self.logic(key, spec, where, partial(self.clause, table)))
            elif key in TIME_KEYS and table is not Table.CANDIDATE:
                continue  # read together below
            elif key.startswith("$"):
                preds.append(self.value(self.metric(table, key, where), spec, path))
            else:
                col = self.column(table, key, where)
                if col.kind is Kind.MAP:
                    raise QueryError(
                        f"{path} is a map: test one entry with "
                        f"{'$metrics.<name>' if key == 'metrics' else '$reasonCounts.<label>'}"
                    )
                preds.append(self.value(col, spec, path))
        if table is not Table.CANDIDATE and any(k in doc for k in TIME_KEYS):
            preds.append(self.time_bound(table, doc, where))
        return preds

    def metric(self, table: Table, key: str, where: str) -> Expr:
        for prefix, column in _MAP_KEYS.items():
            if key.startswith(prefix) and table is Table.STAGE:
                name = key[len(prefix):]
                if not name:
                    raise QueryError(f"{where}.{key}: name the entry, e.g. {prefix}<name>")
                return MapItem(Column(Table.STAGE, column), name)
        metrics = METRIC_KEYS[table]
        if key in metrics:
            return Column(table, metrics[key])
        valid = [*metrics, *LOGIC_KEYS]
        if table is not Table.CANDIDATE:
            valid += TIME_KEYS
        if table is Table.STAGE:
            valid += [f"{p}<name>" for p in _MAP_KEYS]
        raise unknown_name("key", key, valid, where)

    def value(self, expr: Expr, spec: object, where: str) -> Predicate:
        """The condition `spec` puts on `expr`: a bare value, or an object of operators."""
        if isinstance(spec, Mapping):
            if not spec:
                raise QueryError(f"{where}: empty operator object; use one of "
                                 f"{', '.join(OPERATORS)}")
            preds = [self.operator(expr, op, arg, where) for op, arg in spec.items()]
            return preds[0] if len(preds) == 1 else And(tuple(preds))
        if isinstance(spec, list | tuple | set | frozenset):
            raise QueryError(f"{where}: a list is not a value; use {{'$in': [...]}}")
        return IsNull(expr) if spec is None else Compare(expr, "=", Param(spec))

    def operator(self, expr: Expr, op: object, arg: object, where: str) -> Predicate:
        path = f"{where}.{op}"
        if not isinstance(op, str) or op not in OPERATORS:
            raise unknown_name("operator", str(op), OPERATORS, where)
        if op in _COMPARISONS:
            if arg is None and op in ("$eq", "$ne"):
                return IsNull(expr, negated=op == "$ne")
            if isinstance(arg, Mapping | list | tuple | set):
                raise QueryError(f"{path} takes one value, got {arg!r}")
            return Compare(expr, _COMPARISONS[op], Param(arg))  # type: ignore[arg-type]
        if op in ("$in", "$nin"):
            values = _sequence(arg, path)
            negated = op == "$nin"
            test: Predicate = InList(expr, tuple(Param(v) for v in values if v is not None),
                                     negated=negated)
            if None in values:  # Mongo-style: a null in the list matches missing values
                test = And((test, IsNull(expr, True))) if negated else Or((test, IsNull(expr)))
            return test
        if op == "$exists":
            if not isinstance(arg, bool):
                raise QueryError(f"{path} takes true or false, got {arg!r}")
            return IsNull(expr, negated=arg)
        if op == "$regex":
            return Regex(expr, Param(arg))
        return Not(self.value(expr, arg, path))  # $not
