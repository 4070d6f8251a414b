"""`xray-lake query`: SQL over the lake's views, or the JSON query language with --where."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

import xray_lake as xr
from xray_lake.cli.help import Command
from xray_lake.cli.output import (
    Format,
    FormatOption,
    OutputOption,
    RootOption,
    StorageOption,
    check_output,
    emit,
    open_lake,
)

HELP = (
    "Answer a question with SQL over the views runs, stages and candidates (DuckDB), or with "
    "the JSON query language (--where): keys pipeline, stage, candidate; $camelCase keys are "
    "metrics; operators $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $not. Give "
    "exactly one of SQL and --where. SQL '-' reads the query from stdin; --where @FILE "
    "reads the JSON from a file. SQL is read-only: one query, the lake's files only "
    "(--unsafe-sql lifts that, for trusted SQL).\n\n"
    "Examples:\n\n"
    "  xray-lake query \"select label, count(*) from runs group by 1\"\n"
    "  xray-lake query \"select * from stages where type = 'filtering' and fail_ratio > 0.9\" "
    "--format csv\n"
    "  xray-lake query --where '{\"stage\": {\"type\": \"filtering\", "
    "\"$failRatio\": {\"$gt\": 0.9}}}' --per run\n"
    "  xray-lake query --where '{\"stage\": {\"type\": \"filtering\"}}' "
    "--columns run_id,label,name,fail_ratio\n"
    "  xray-lake query - --format parquet -o out.parquet < question.sql"
)

T = TypeVar("T")


# Columns of a wide `--where` result that the terminal table leaves out first.
TABLE_HIDES = ("stage_id", "parent_stage_id", "finished_at", "error_message", "sampled",
               "sample_rate", "n_candidates_stored", "n_truncated", "validation_error",
               "run_started_at", "run_finished_at", "run_error_message", "run_sdk_version",
               "run_host", "run_pid", "sdk_version", "host", "pid", "started_at",
               "n_passed", "pass_ratio", "run_duration_ms", "run_n_stages", "seq",
               "duration_ms", "n_failed", "date")


class Per(StrEnum):
    stage = "stage"
    run = "run"


def parse_where(text: str) -> dict[str, Any]:
    """--where as a JSON object (`@file.json` reads a file); a usage error otherwise."""
    source = "--where"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {source}: {exc.strerror or exc}",
                                     param_hint="'--where'") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{source} is not valid JSON: {exc}",
                                 param_hint="'--where'") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{source} must be a JSON object like "
                                 '{"stage": {"type": "filtering"}}, '
                                 f"not {type(value).__name__}", param_hint="'--where'")
    return value


def query(
    sql: Annotated[str | None, typer.Argument(
        metavar="SQL", help="A DuckDB SQL query over runs, stages, candidates; '-' = stdin.",
        show_default=False)] = None,
    where: Annotated[str | None, typer.Option(
        "--where", "-w", metavar="JSON", help="A JSON-language query (or @FILE).")] = None,
    per: Annotated[Per | None, typer.Option(
        "--per", case_sensitive=False,
        help="With --where: one row per matching stage (default) or per run.")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", "-c", metavar="A,B,...|all",
        help="With --where: only these result columns (e.g. run_id,label,name,fail_ratio,"
             "run_status), or 'all' (every stage and run_ column, or run column). Default: "
             "ids, label, date, stage name and type, counts and ratios, and the columns the "
             "query tests; per run, the run's status and input.")] = None,
    unsafe_sql: Annotated[bool, typer.Option(
        "--unsafe-sql", help="Full DuckDB: any file, COPY, ATTACH, SET, several statements "
                             "(trusted SQL only; see docs/security.md).")] = False,
    root: RootOption = None,
    storage_option: StorageOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    if (sql is None) == (where is None):
        raise typer.BadParameter("give exactly one of SQL and --where", param_hint="'SQL'")
    if per is not None and where is None:
        raise typer.BadParameter("--per applies to --where queries only",
                                 param_hint="'--per'")
    if columns is not None and where is None:
        raise typer.BadParameter("--columns applies to --where queries only (in SQL, "
                                 "name the columns in the SELECT)", param_hint="'--columns'")
    names: list[str] | str | None = None
    if columns is not None:
        names = [c.strip() for c in columns.split(",") if c.strip()]
        names = "all" if names == ["all"] else names
    if names is not None and not names:
        raise typer.BadParameter("--columns is empty: give names like run_id,name,fail_ratio",
                                 param_hint="'--columns'")
    check_output(fmt, output)
    spec = parse_where(where) if where is not None else None
    if sql == "-":
        sql = sys.stdin.read()
    if sql is not None and not sql.strip():
        raise typer.BadParameter("the SQL query is empty", param_hint="'SQL'")
    with open_lake(root, storage_option, read_only=not unsafe_sql) as lake:
        if spec is not None:
            found = interruptible(lake, lambda: lake.find(
                spec, per=(per or Per.stage).value, columns=names))
        else:
            assert sql is not None
            text = sql
            found = interruptible(lake, lambda: lake.sql(text))
    emit(found, fmt, output, hide=TABLE_HIDES)


def interruptible(lake: xr.Lake, ask: Callable[[], T]) -> T:
    """Run `ask` so that Ctrl-C stops it: DuckDB holds the main thread in C while it runs,
    where Python never sees the signal, so the query runs in a worker thread and the main
    thread, woken by SIGINT, interrupts the connection."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return ask()  # (a host that handles SIGINT itself, or not the main thread)
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()  # (not Thread.join: on 3.11 a join that KeyboardInterrupt
    # breaks can leave the thread marked as finished while it still runs)

    def work() -> None:
        try:
            outcome.append(ask())
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="xray-lake-query", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        import duckdb  # loaded already by the lake; imported here so `--help` stays light

        # DuckDB refuses `interrupt` while the connection is in some other call (creating
        # the views): keep asking until the worker is done, for a few seconds at most.
        deadline = time.monotonic() + 5.0
        while not done.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(duckdb.Error):
                lake.interrupt()
            done.wait(0.05)
        failure.clear()  # (its traceback holds the interrupted query)
        raise typer.Abort() from None
    if failure:
        raise failure[0]
    return outcome[0]


def register(app: typer.Typer) -> None:
    """Add `query` to the app."""
    app.command("query", help=HELP, cls=Command, no_args_is_help=False)(query)
