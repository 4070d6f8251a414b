"""`xray-lake show RUN_ID`: one run's header and its funnel, stage by stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from xray_lake.cli.help import Command
from xray_lake.cli.output import (
    Format,
    FormatOption,
    OutputOption,
    RootOption,
    StorageOption,
    cell,
    check_output,
    emit,
    open_lake,
)
from xray_lake.display import duration, percent
from xray_lake.errors import XrayLakeError

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    import polars as pl
    from rich.table import Table
    from rich.text import Text

    from xray_lake.query.journey import RunInfo
    from xray_lake.query.lake import Lake

BAR_WIDTH = 12

HELP = (
    "Show a run's funnel: each stage in order with its candidates in -> out, a bar of the "
    "share kept, the fail ratio, the top drop reasons and the duration; the header has the "
    "run's label, status, duration and error. Other formats write the funnel rows.\n\n"
    "Examples:\n\n"
    "  xray-lake show fs-3f2a-0017\n"
    "  xray-lake show fs-3f2a-0017 --format json\n"
    "  xray-lake show fs-3f2a-0017 --root s3://bucket/lake"
)


def runs_of(lake: Lake, run_id: str) -> list[RunInfo]:
    """The run's rows (`find_runs`), or the one-line data error `show` and `why` give."""
    from xray_lake.query.journey import find_runs

    found = find_runs(lake, run_id)
    if not found:
        raise XrayLakeError(f"no run {run_id!r} in the lake at {lake.root} "
                            "(`xray-lake runs` lists the recent ones)")
    return found


def human_ms(ms: float | None) -> str:
    """A duration for people (display.duration), `-` when there is none."""
    return "-" if ms is None else duration(ms)


def bar(n_in: int | None, n_out: int | None, width: int = BAR_WIDTH) -> Text:
    """A bar proportional to n_out / n_in and the percentage kept; empty without an input count."""
    from rich.text import Text

    if not n_in or n_out is None:
        return Text("")
    share = n_out / n_in
    filled = max(0, min(width, round(share * width)))
    style = "red" if share < 0.1 else "yellow" if share < 0.5 else "green"
    text = Text("█" * filled, style=style)
    text.append("·" * (width - filled), style="dim")
    text.append(f" {share:>4.0%}")
    return text


def header(run: RunInfo) -> Text:
    """`fs-3f2a-0017  fashion_search  failure  5.70 ms  2024-05-01 12:00:03 UTC  4 stages`."""
    from rich.text import Text

    status_style = "green" if run.status == "success" else "bold red"
    text = Text.assemble((run.run_id, "bold"), "  ", (run.label or "''", "cyan"), "  ",
                         (run.status or "unknown status", status_style), "  ",
                         human_ms(run.duration_ms))
    if run.started_at is not None:
        text.append(f"  started {cell(run.started_at)} UTC")
    if run.n_stages is not None:
        text.append(f"  {run.n_stages} stage{'' if run.n_stages == 1 else 's'}")
    if run.status is None:
        text.append("  (no run row: the process may have died mid-run)", style="yellow")
    return text


def error(run: RunInfo, stages: pl.DataFrame) -> Text | None:
    """`error at catalog-query: CatalogTimeout:CATALOG_TIMEOUT: catalog did not answer`."""
    import polars as pl
    from rich.text import Text

    if run.status not in ("failure", "incomplete") and not run.error_code:
        return None
    failed = stages.filter(pl.col("status") == "failure")
    where = f" at {failed['name'][0]}" if failed.height else ""
    what = ": ".join(v for v in (run.error_code, run.error_message) if v) or "no message"
    return Text(f"error{where}: {what}", style="red")


def funnel_table(stages: pl.DataFrame) -> Table:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, justify in (("#", "right"), ("stage", "left"), ("type", "left"),
                          ("status", "left"), ("in", "right"), ("out", "right"),
                          ("kept", "left"), ("fail", "right"), ("top reasons", "left"),
                          ("duration", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in stages.iter_rows(named=True):
        failed = row["status"] == "failure"
        table.add_row(
            str(row["seq"]), escape(row["name"] or ""), row["type"] or "",
            Text(row["status"] or "", style="bold red" if failed else ""),
            cell(row["n_in"]), cell(row["n_out"]), bar(row["n_in"], row["n_out"]),
            percent(row["fail_ratio"]),
            escape(row["top_reasons"] or ""), human_ms(row["duration_ms"]),
        )
    return table


def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run to show.")],
    root: RootOption = None,
    storage_option: StorageOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    from rich.console import Group
    from rich.text import Text

    from xray_lake.query.journey import funnel

    check_output(fmt, output)
    with open_lake(root, storage_option) as lake:
        found = runs_of(lake, run_id)
        stages = funnel(lake, run_id, runs=found)
    renderable: Any = None
    if fmt is Format.table:
        parts: list[Any] = [header(found[0])]
        if (err := error(found[0], stages)) is not None:
            parts.append(err)
        if len(found) > 1:
            parts.append(Text(f"({len(found)} runs share this id; their stages are merged)",
                              style="yellow"))
        parts += [Text(""), funnel_table(stages)]
        renderable = Group(*parts)
    emit(stages, fmt, output, table=renderable)


def register(app: typer.Typer) -> None:
    """Add `show` to the app."""
    app.command("show", help=HELP, cls=Command,
                no_args_is_help=False)(show)
