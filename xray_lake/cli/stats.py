"""`xray-lake stats`: per pipeline label and stage, fail ratios, durations and top reasons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from xray_lake.cli import stderr
from xray_lake.cli.help import Command
from xray_lake.cli.output import (
    Format,
    FormatOption,
    LabelsOption,
    OutputOption,
    RootOption,
    SinceOption,
    StorageOption,
    UntilOption,
    cell,
    check_output,
    emit,
    in_list,
    ms_cell,
    open_lake,
    window,
)
from xray_lake.display import percent

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    import polars as pl
    from rich.table import Table

STAGE_TYPES = ("retrieval", "scoring", "filtering", "generation", "ranking", "raw")

# {where}: window and label conditions on `stages` (partition columns first, so DuckDB prunes).
STATS_SQL = """\
with s as (
  select label, name, type, seq, run_id, fail_ratio, duration_ms, reason_counts
  from stages {where}
),
agg as (
  select label, name as stage, any_value(type) as type, min(seq) as first_seq,
         count(distinct run_id) as runs,
         avg(fail_ratio) as fail_ratio_mean,
         quantile_cont(fail_ratio, 0.9) as fail_ratio_p90,
         quantile_cont(duration_ms, 0.5) as duration_p50_ms,
         quantile_cont(duration_ms, 0.9) as duration_p90_ms
  from s group by label, name
),
reasons as (
  select label, name, e.key as reason, sum(e.value)::bigint as n
  from (select label, name, unnest(map_entries(reason_counts)) as e from s)
  group by all
),
top as (
  select label, name,
         string_agg(reason || ' ' || n, ', ' order by n desc, reason) as top_reasons
  from (select *, row_number() over (partition by label, name order by n desc, reason) as rk
        from reasons)
  where rk <= 3
  group by all
)
select a.label, a.stage, a.type, a.runs, a.fail_ratio_mean, a.fail_ratio_p90,
       a.duration_p50_ms, a.duration_p90_ms, t.top_reasons
from agg a left join top t on a.label = t.label and a.stage = t.name
order by a.label, a.first_seq, a.stage"""

HELP = (
    "Summarise stages over a time window, one row per pipeline label and stage name: runs, "
    "mean and p90 fail ratio, p50 and p90 duration (ms), and the top 3 drop reasons with "
    "their counts. The window defaults to the last 7 days (--since all for everything).\n\n"
    "Examples:\n\n"
    "  xray-lake stats\n"
    "  xray-lake stats --label fashion_search --since 24h\n"
    "  xray-lake stats --type filtering --since 2024-05-01 --until 2024-05-07 --format csv"
)


def _partitions(labels: list[str], since: str | None,
                until: str | None) -> tuple[list[str], list[Any]]:
    """Label and time-window conditions (partition columns first, so DuckDB prunes)."""
    clauses, params = window(since, until)
    if labels:
        clauses.insert(0, in_list("label", labels))
        params = [*labels, *params]
    return clauses, params


def stats_sql(labels: list[str], types: list[str], since: str | None,
              until: str | None) -> tuple[str, list[Any]]:
    """The summary's SQL and parameters (values bound, never pasted)."""
    clauses, params = _partitions(labels, since, until)
    if types:
        clauses.append(in_list("type", types))
        params += types
    where = f"where {' and '.join(clauses)}" if clauses else ""
    return STATS_SQL.format(where=where), params


def incomplete_sql(labels: list[str], since: str | None,
                   until: str | None) -> tuple[str, list[Any]]:
    """How many runs in the window lost records (status 'incomplete'): their funnels lack
    stages, so the summary says so."""
    clauses, params = _partitions(labels, since, until)
    clauses.append("status = 'incomplete'")
    return f"select count(*) as n from runs where {' and '.join(clauses)}", params


def stats_table(summary: pl.DataFrame) -> Table:
    """The summary for a terminal (no type column): ratios as percentages; reasons wrap."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, justify in (("label", "left"), ("stage", "left"), ("runs", "right"),
                          ("fail avg", "right"), ("fail p90", "right"), ("p50 ms", "right"),
                          ("p90 ms", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("top reasons", ratio=1, min_width=24)
    for row in summary.iter_rows(named=True):
        table.add_row(escape(row["label"]), escape(row["stage"]), cell(row["runs"]),
                      percent(row["fail_ratio_mean"]), percent(row["fail_ratio_p90"]),
                      ms_cell(row["duration_p50_ms"]), ms_cell(row["duration_p90_ms"]),
                      escape(row["top_reasons"] or ""))
    return table


def _check_types(lake: Any, values: list[str]) -> None:
    """A type is built in, or registered (xr.register_stage_type) and held by some stage of
    the lake: this process need not know the registration."""
    custom = [v for v in values if v not in STAGE_TYPES]
    if not custom:
        return
    held = set(lake.sql(f"select distinct type from stages where {in_list('type', custom)}",
                        custom)["type"])
    for value in custom:
        if value not in held:
            raise typer.BadParameter(f"{value!r} is not a stage type: not built in, and no "
                                     f"stage of the lake has it; use one of "
                                     f"{', '.join(STAGE_TYPES)} or a registered type",
                                     param_hint="'--type'")


def stats(
    label: LabelsOption = None,
    stage_type: Annotated[list[str] | None, typer.Option(
        "--type", "-t", metavar="TYPE",
        help=f"Only stages of this type (repeatable): {', '.join(STAGE_TYPES)}, or a "
             "registered one.")] = None,
    since: SinceOption = "7d",
    until: UntilOption = None,
    root: RootOption = None,
    storage_option: StorageOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    check_output(fmt, output)
    sql, params = stats_sql(label or [], stage_type or [], since, until)
    with open_lake(root, storage_option) as lake:
        _check_types(lake, stage_type or [])
        summary = lake.sql(sql, params)
        incomplete = int(lake.sql(*incomplete_sql(label or [], since, until))["n"][0])
    emit(summary, fmt, output, table=stats_table(summary) if fmt is Format.table else None)
    if incomplete:
        stderr().print(f"{incomplete} run(s) in the window are incomplete (xray-lake shed some "
                       "of their records): their stages are counted as they landed; leave "
                       "them out with runs.status != 'incomplete'", markup=False)
    if fmt is Format.table and summary.is_empty():
        stderr().print(f"no stages in the window (since {since}); try --since all",
                       markup=False)


def register(app: typer.Typer) -> None:
    """Add `stats` to the app."""
    app.command("stats", help=HELP, cls=Command,
                no_args_is_help=False)(stats)
