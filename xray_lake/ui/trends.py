"""The trends page's data: one label's stages day by day, three grouped scans of `stages`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from xray_lake.query.lake import Lake
from xray_lake.query.nodes import parse_time


@dataclass(frozen=True, slots=True)
class Trends:
    """A label's stages day by day: mean fail ratio and p90 duration, top reasons."""

    label: str
    days: list[str]
    stages: list[dict[str, Any]]  # per stage over the window: type, times run, p50/p90, fail
    daily: list[dict[str, Any]]  # per day and stage: fail_ratio, p90_ms
    reasons: list[dict[str, Any]]  # per day: reason, dropped (its 3 biggest)


def _window(since: str, until: str) -> tuple[str, list[Any]]:
    """Conditions for `since <= started_at < until`, on `date` too (so folders are pruned)."""
    clauses: list[str] = []
    params: list[Any] = []
    if since:
        start = parse_time(since)
        clauses.append("date >= ? and started_at >= ?")
        params += [start.date().isoformat(), start]
    if until:
        stop = parse_time(until, end_of_day=True)
        clauses.append("date <= ? and started_at < ?")
        params += [(stop - dt.timedelta(microseconds=1)).date().isoformat(), stop]
    return "".join(f" and {c}" for c in clauses), params


def trends(lake: Lake, label: str, since: str, until: str) -> Trends:
    """The trends page of one label over a window (stages table only; three grouped scans).

    Counts are stage rows (`times`: how often the stage ran), not distinct runs: a distinct
    count over 100,000 runs costs more than the rest of the page."""
    window, params = _window(since, until)
    where = f"label = ?{window}"
    values = [label, *params]
    daily = lake.sql(
        "select date, name, min(seq) as seq, "
        "avg(fail_ratio) as fail_ratio, quantile_cont(duration_ms, 0.9) as p90_ms "
        f"from stages where {where} group by date, name order by date, seq, name",
        values).to_dicts()
    stages = lake.sql(
        "select name, any_value(type) as type, min(seq) as seq, "
        "count(*) as times, avg(fail_ratio) as fail_ratio, "
        "quantile_cont(duration_ms, 0.5) as p50_ms, quantile_cont(duration_ms, 0.9) as p90_ms "
        f"from stages where {where} group by name order by seq, name", values).to_dicts()
    reasons = lake.sql(
        "select date, e.key as reason, sum(e.value)::bigint as dropped "
        "from (select date, unnest(map_entries(reason_counts)) as e from stages "
        f"where {where} and cardinality(reason_counts) > 0) group by date, reason "
        "qualify row_number() over (partition by date order by dropped desc, reason) <= 3 "
        "order by date, dropped desc, reason", values).to_dicts()
    days = sorted({str(row["date"]) for row in daily})
    return Trends(label, days, stages, daily, reasons)
