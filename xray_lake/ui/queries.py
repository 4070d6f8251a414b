"""Each page's data, read through the lake's query layer and paged in SQL.

The runs list is the JSON query language (`jsonql.parse`) compiled by the one compiler, with
the page's order, LIMIT and OFFSET added to its tree: DuckDB sorts and cuts, Python sees one
page. A run's funnel and a candidate's journey are `query.journey`'s; the rest are small
queries scoped to the run's label/date partitions, so DuckDB prunes the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from xray_lake.errors import QueryError
from xray_lake.query.compiler import compile_query
from xray_lake.query.journey import Journey, RunInfo, funnel, journey
from xray_lake.query.jsonql import parse
from xray_lake.query.lake import Lake
from xray_lake.query.nodes import Column, Order, Table
from xray_lake.query.projection import resolve
from xray_lake.query.promoted_fields import promoted_columns
from xray_lake.storage.confine import subdirs
from xray_lake.storage.layout import unescape_label
from xray_lake.storage.s3_clients import is_remote

PAGE_SIZE: Final = 50
HISTOGRAM_BINS: Final = 20
LABEL_KEY: Final = "label="

RUN_COLUMNS: Final = ("run_id", "label", "started_at", "status", "duration_ms", "n_stages",
                      "error_code")
RUN_SORTS: Final = ("started_at", "duration_ms", "n_stages", "status", "label", "run_id")
STATUSES: Final = ("success", "failure", "incomplete")

HEAVY_DROP: Final[Mapping[str, Any]] = {"stage": {"type": "filtering",
                                                  "$failRatio": {"$gt": 0.9}}}
SAVED_VIEWS: Final[Mapping[str, tuple[str, Mapping[str, Any]]]] = {
    "heavy-drop": ("A filtering stage eliminated > 90%", HEAVY_DROP),
}
"""Saved views of the runs list: name -> (title, JSON query)."""

CANDIDATE_COLUMNS: Final = ("candidate_id", "in_position", "out_position", "passed",
                            "reason_label", "reason_text", "score")
CANDIDATE_SORTS: Final = ("in_position", "out_position", "score", "candidate_id")
CANDIDATE_SHOWS: Final[Mapping[str, str]] = {
    "all": "",
    "passed": "passed = true",
    "failed": "passed = false",
    "kept": "out_position is not null",
    "not-kept": "out_position is null",
}
"""The stage page's `show=` filter -> its SQL condition (fixed text, never user input)."""


def _text(params: Mapping[str, str], key: str) -> str:
    return (params.get(key) or "").strip()


def _page(params: Mapping[str, str]) -> int:
    text = _text(params, "page") or "1"
    if not text.isdigit() or int(text) < 1:
        raise QueryError(f"page must be a whole number from 1, got {text!r}")
    return int(text)


def _choice(params: Mapping[str, str], key: str, allowed: Sequence[str], default: str) -> str:
    value = _text(params, key) or default
    if value not in allowed:
        raise QueryError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _descending(params: Mapping[str, str], default: str) -> bool:
    return _choice(params, "dir", ("asc", "desc"), default) == "desc"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: its rows and the count of all rows the filters match."""

    rows: list[dict[str, Any]]
    total: int
    number: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


# --- runs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunsFilter:
    """The runs list's state, read from (and written back to) the query string."""

    label: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    query: str = ""  # the JSON query language, as typed
    sort: str = "started_at"
    descending: bool = True
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RunsFilter:
        status = _text(params, "status")
        if status and status not in STATUSES:
            raise QueryError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        query = _text(params, "q")
        view = _text(params, "view")
        if view:
            if view not in SAVED_VIEWS:
                raise QueryError(f"no saved view {view!r}; one of {', '.join(SAVED_VIEWS)}")
            query = json.dumps(SAVED_VIEWS[view][1])
        return cls(label=_text(params, "label"), status=status, since=_text(params, "since"),
                   until=_text(params, "until"), query=query,
                   sort=_choice(params, "sort", RUN_SORTS, "started_at"),
                   descending=_descending(params, "desc"), page=_page(params))

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this state with `changes`, leaving defaults out."""
        state = dataclasses.replace(self, **changes)
        out = {"label": state.label, "status": state.status, "since": state.since,
               "until": state.until, "q": state.query}
        if state.sort != "started_at" or not state.descending:
            out["sort"] = state.sort
            out["dir"] = "desc" if state.descending else "asc"
        if state.page != 1:
            out["page"] = str(state.page)
        return {key: value for key, value in out.items() if value}

    def document(self) -> dict[str, Any]:
        """The JSON query the filters make: the typed one, and the form's fields as a
        `pipeline` clause (merged into the typed one's, or beside it in `$and`)."""
        typed: dict[str, Any] = {}
        if self.query:
            try:
                loaded = json.loads(self.query)
            except json.JSONDecodeError as exc:
                raise QueryError(f"the JSON query is not valid JSON: {exc}") from None
            if not isinstance(loaded, dict):
                raise QueryError("the JSON query must be an object, e.g. "
                                 '{"stage": {"type": "filtering"}}')
            typed = loaded
        clause: dict[str, Any] = {}
        for key, value in (("label", self.label), ("status", self.status),
                           ("$since", self.since), ("$until", self.until)):
            if value:
                clause[key] = value
        if not clause:
            return typed
        given = typed.get("pipeline")
        if given is None:
            return {**typed, "pipeline": clause}
        if isinstance(given, dict) and not set(given) & set(clause):
            return {**typed, "pipeline": {**given, **clause}}
        return {"$and": [typed, {"pipeline": clause}]}


def runs_page(lake: Lake, state: RunsFilter) -> Page:
    """One page of runs matching `state`, sorted in SQL, and how many match in all (a window
    count in the same query: one scan)."""
    node = parse(state.document(), per="run", fields=lambda: promoted_columns(lake))
    listing = dataclasses.replace(
        node, select=resolve(RUN_COLUMNS, "run"),
        order_by=(Order(Column(Table.RUN, state.sort), state.descending),
                  Order(Column(Table.RUN, "run_id"))))
    compiled = compile_query(listing)
    tree = (compiled.tree.copy().select("count(*) over () as _total", append=True)
            .limit(PAGE_SIZE).offset((state.page - 1) * PAGE_SIZE))
    rows = lake.sql(tree.sql(dialect="duckdb"), list(compiled.params)).to_dicts()
    if rows:
        total = int(rows[0]["_total"])
    else:  # past the last page (or nothing matches): count alone
        counted = compile_query(dataclasses.replace(node, select=resolve(["run_id"], "run")))
        total = int(lake.sql(f"select count(*) as n from ({counted.sql}) as matched",
                             list(counted.params)).item(0, 0))
    return Page([{k: v for k, v in row.items() if k != "_total"} for row in rows], total,
                state.page)


def labels(lake: Lake) -> list[str]:
    """Every pipeline label of the lake, from the folder names of `runs` (a local root; no
    file is read) or from the data (object storage)."""
    if is_remote(lake.root):
        return [str(v) for v in lake.sql("select distinct label from runs order by 1")["label"]]
    found = set()
    for name in subdirs(os.path.join(lake.root, "runs")):
        if name.startswith(LABEL_KEY):
            try:
                found.add(unescape_label(name[len(LABEL_KEY):]))
            except ValueError:
                continue  # not a folder xray-lake wrote
    return sorted(found)


# --- one run ---------------------------------------------------------------------------


def _scope(runs: Sequence[RunInfo]) -> tuple[str, list[Any]]:
    """`(label = ? and date = ?) or ...` over the run's partitions, so DuckDB prunes the rest."""
    pairs = sorted({(r.label, r.date) for r in runs})
    return ("(" + " or ".join("(label = ? and date = ?)" for _ in pairs) + ")",
            [value for pair in pairs for value in pair])


@dataclass(frozen=True, slots=True)
class RunView:
    """What the run page shows: the run row(s), its funnel and its JSON."""

    info: RunInfo
    rows: int  # how many run rows share the id (their stages are merged)
    stages: list[dict[str, Any]]
    detail: dict[str, Any] = field(default_factory=dict)


def run_view(lake: Lake, run_id: str, found: list[RunInfo]) -> RunView:
    """The funnel (`journey.funnel`) with each stage's id, error and JSON beside it."""
    numbers = funnel(lake, run_id, runs=found).to_dicts()
    scope, params = _scope(found)
    extra = lake.sql(
        "select stage_id, error_code, error_message, input_json, output_json, sampled, "
        "n_candidates_stored from stages "
        f"where run_id = ? and {scope} order by seq, started_at", [run_id, *params]).to_dicts()
    stages = [{**row, **more} for row, more in zip(numbers, extra, strict=False)]
    detail = lake.sql(
        "select input_json, output_json, attributes, n_stages_shed, n_candidates_shed "
        f"from runs where run_id = ? and {scope} order by started_at limit 1",
        [run_id, *params]).to_dicts()
    return RunView(found[0], len(found), stages, detail[0] if detail else {})


# --- one stage -------------------------------------------------------------------------


STAGE_COLUMNS: Final = ("stage_id", "seq", "name", "type", "status", "n_in", "n_out",
                        "n_passed", "n_failed", "fail_ratio", "reason_counts", "duration_ms",
                        "error_code", "error_message", "sampled", "sample_rate",
                        "n_candidates_stored", "score_min", "score_p50", "score_max")


def stage_row(lake: Lake, run_id: str, stage_id: str,
              found: list[RunInfo]) -> dict[str, Any] | None:
    """The stage's row, or None when the run has no such stage."""
    scope, params = _scope(found)
    rows = lake.sql(f"select {', '.join(STAGE_COLUMNS)} from stages "
                    f"where run_id = ? and stage_id = ? and {scope} limit 1",
                    [run_id, stage_id, *params]).to_dicts()
    return rows[0] if rows else None


@dataclass(frozen=True, slots=True)
class CandidatesFilter:
    """The stage page's state: which candidates, in which order, which page."""

    show: str = "all"
    reason: str = ""
    sort: str = "in_position"
    descending: bool = False
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CandidatesFilter:
        sort = _choice(params, "sort", CANDIDATE_SORTS, "in_position")
        return cls(show=_choice(params, "show", tuple(CANDIDATE_SHOWS), "all"),
                   reason=_text(params, "reason"), sort=sort,
                   descending=_descending(params, "desc" if sort == "score" else "asc"),
                   page=_page(params))

    def params(self, **changes: Any) -> dict[str, str]:
        state = dataclasses.replace(self, **changes)
        out = {"show": "" if state.show == "all" else state.show, "reason": state.reason}
        if state.sort != "in_position" or state.descending:
            out["sort"] = state.sort
            out["dir"] = "desc" if state.descending else "asc"
        if state.page != 1:
            out["page"] = str(state.page)
        return {key: value for key, value in out.items() if value}


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts of scores in equal-width bins from `low` to `high`."""

    low: float
    high: float
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)


# One scan of the stage's candidate rows (`c`, materialised once) answers the page (`p`),
# the count of rows the filters keep (`f`) and the score histogram (`h`, over the bounds
# `b`); the outer join gives one row even when the page is empty.
STAGE_CANDIDATES_SQL = """\
with c as materialized (
  select {columns} from candidates where run_id = ? and stage_id = ? and {scope}),
f as (select * from c where {filters}),
p as (select *, row_number() over (order by {order}) as _seq from f
      qualify _seq > {offset} and _seq <= {offset} + {size}),
b as (select min(score) as lo, max(score) as hi from c where isfinite(score)),
h as (select coalesce(least(floor((score - lo) / nullif(hi - lo, 0) * {bins})::int,
                            {bins} - 1), 0) as bin, count(*) as n
      from c, b where isfinite(score) group by bin)
select p.*, (select count(*) from f) as _total, (select lo from b) as _lo,
       (select hi from b) as _hi, (select list([bin, n]) from h) as _hist
from (select 1) as one left join p on true
order by _seq"""


def stage_candidates(lake: Lake, run_id: str, stage_id: str, found: list[RunInfo],
                     state: CandidatesFilter,
                     bins: int = HISTOGRAM_BINS) -> tuple[Page, Histogram | None]:
    """One page of the stage's candidate rows (filtered and sorted in SQL), and the histogram
    of all its scores (None when no candidate has one): one query, one scan."""
    scope, params = _scope(found)
    filters = ["true"]
    values: list[Any] = [run_id, stage_id, *params]
    if CANDIDATE_SHOWS[state.show]:
        filters.append(CANDIDATE_SHOWS[state.show])
    if state.reason:
        filters.append("reason_label = ?")
        values.append(state.reason)
    order = (f"{state.sort} {'desc' if state.descending else 'asc'} nulls last, "
             "in_position nulls last, out_position nulls last, candidate_id")
    sql = STAGE_CANDIDATES_SQL.format(
        columns=", ".join(CANDIDATE_COLUMNS), scope=scope, filters=" and ".join(filters),
        order=order, offset=(state.page - 1) * PAGE_SIZE, size=PAGE_SIZE, bins=int(bins))
    rows = lake.sql(sql, values).to_dicts()
    first = rows[0]
    page = Page([{k: row[k] for k in CANDIDATE_COLUMNS} for row in rows
                 if row["_seq"] is not None], int(first["_total"]), state.page)
    if first["_lo"] is None:
        return page, None
    counts = [0] * bins
    for bin_, n in first["_hist"] or []:
        counts[int(bin_)] = int(n)
    return page, Histogram(float(first["_lo"]), float(first["_hi"]), counts)


# --- one candidate ---------------------------------------------------------------------


def stage_ids(lake: Lake, run_id: str, found: list[RunInfo]) -> dict[int, str]:
    """seq -> stage_id of the run's stages, to link a journey's steps to their stages."""
    scope, params = _scope(found)
    rows = lake.sql(f"select seq, stage_id from stages where run_id = ? and {scope}",
                    [run_id, *params]).rows()
    return {int(seq): str(stage_id) for seq, stage_id in rows}


def candidate_journey(lake: Lake, run_id: str, candidate_id: str,
                      found: list[RunInfo]) -> Journey:
    """`journey.journey`: a row per stage the candidate entered, and the verdict."""
    return journey(lake, run_id, candidate_id, runs=found)
