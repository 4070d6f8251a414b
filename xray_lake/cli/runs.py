"""`xray-lake runs`: list recent runs, filtered by label, status and time window."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

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
    check_output,
    emit,
    in_list,
    open_lake,
    window,
)

COLUMNS = "run_id, label, started_at, status, duration_ms, n_stages, error_code"

HELP = (
    "List runs, newest first: id, label, start time, status, duration, stages, error code.\n\n"
    "Examples:\n\n"
    "  xray-lake runs\n"
    "  xray-lake runs --label fashion_search --status failure --since 7d\n"
    "  xray-lake runs --since 2024-05-01 --until 2024-05-07 --limit 0 --format csv\n"
    "  xray-lake runs --format parquet --output runs.parquet"
)


class Status(StrEnum):
    success = "success"
    failure = "failure"


def runs_sql(labels: list[str], status: Status | None, since: str | None, until: str | None,
             limit: int) -> tuple[str, list[Any]]:
    """The listing's SQL and parameters; label and date filters prune partitions."""
    clauses, params = window(since, until)
    if labels:
        clauses.append(in_list("label", labels))
        params += labels
    if status is not None:
        clauses.append("status = ?")
        params.append(status.value)
    where = f" where {' and '.join(clauses)}" if clauses else ""
    sql = f"select {COLUMNS} from runs{where} order by started_at desc, run_id"
    if limit:
        sql += " limit ?"
        params.append(limit + 1)  # one more than shown, to tell whether there are more
    return sql, params


def runs(
    label: LabelsOption = None,
    status: Annotated[Status | None, typer.Option(
        "--status", "-s", case_sensitive=False, help="Only runs with this status.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(
        "--limit", "-n", min=0, metavar="N", help="At most N runs; 0 for all.")] = 20,
    root: RootOption = None,
    storage_option: StorageOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    check_output(fmt, output)
    sql, params = runs_sql(label or [], status, since, until, limit)
    with open_lake(root, storage_option) as lake:
        found = lake.sql(sql, params)
    more = bool(limit) and found.height > limit
    if more:
        found = found.head(limit)
    emit(found, fmt, output)
    if fmt is Format.table and found.is_empty():
        stderr().print("no runs match", markup=False)
    elif fmt is Format.table and more:
        stderr().print(f"(the newest {limit}; --limit 0 for all)", markup=False)


def register(app: typer.Typer) -> None:
    """Add `runs` to the app."""
    app.command("runs", help=HELP, cls=Command,
                no_args_is_help=False)(runs)
