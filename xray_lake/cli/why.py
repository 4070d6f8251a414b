"""`xray-lake why RUN_ID CANDIDATE_ID`: where one candidate went in a run, and why it stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from xray_lake.cli import stderr
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
from xray_lake.cli.show import runs_of
from xray_lake.errors import XrayLakeError

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    import polars as pl
    from rich.table import Table

HELP = (
    "Follow one candidate through a run: every stage it entered, its positions in and out "
    "(1-based), pass/fail, reason and score, then a one-line verdict such as 'dropped at "
    "price-filter: price_too_high (...)' or 'ranked 3rd of 30 at rerank'. Other formats "
    "write the stage rows (positions 0-based, as stored) and print the verdict on stderr. "
    "A candidate the run never saw (or a mistyped id) is an error: exit code 1.\n\n"
    "Examples:\n\n"
    "  xray-lake why fs-3f2a-0017 p-00042\n"
    "  xray-lake why fs-3f2a-0017 p-00042 --format json\n"
    "  xray-lake why fs-3f2a-0017 p-00042 --root /tmp/demo-lake"
)


def _position(value: int | None) -> str:
    return "" if value is None else str(value + 1)


def steps_table(steps: pl.DataFrame) -> Table:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, justify in (("#", "right"), ("stage", "left"), ("type", "left"),
                          ("pos in", "right"), ("pos out", "right"), ("passed", "left"),
                          ("reason", "left"), ("score", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in steps.iter_rows(named=True):
        passed = row["passed"]
        reason = " ".join(v for v in (row["reason_label"], row["reason_text"] and
                                      f"({row['reason_text']})") if v)
        table.add_row(
            cell(row["seq"]), escape(row["stage"] or ""), row["type"] or "",
            _position(row["in_position"]), _position(row["out_position"]),
            Text("no", style="bold red") if passed is False else ("yes" if passed else ""),
            escape(reason), cell(row["score"]),
        )
    return table


def why(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run.")],
    candidate_id: Annotated[str, typer.Argument(
        metavar="CANDIDATE_ID", help="The candidate's id (as stored in candidate_id).")],
    root: RootOption = None,
    storage_option: StorageOption = None,
    fmt: FormatOption = Format.table,
    output: OutputOption = None,
) -> None:
    from rich.console import Group
    from rich.text import Text

    from xray_lake.query.journey import journey

    check_output(fmt, output)
    with open_lake(root, storage_option) as lake:
        found = runs_of(lake, run_id)
        path = journey(lake, run_id, candidate_id, runs=found)
    if path.steps.is_empty():  # a mistyped id must not read like a real miss: exit 1
        detail = path.verdict.removeprefix(f"never retrieved in run {run_id}")
        raise XrayLakeError(f"no candidate {candidate_id!r} in run {run_id}{detail}: never "
                            "retrieved, or the id is mistyped (ids as in "
                            "candidates.candidate_id)")
    verdict = Text(f"{candidate_id}: {path.verdict}", style="bold")
    renderable: Any = None
    if fmt is Format.table:
        renderable = Group(steps_table(path.steps), Text(""), verdict)
    emit(path.steps, fmt, output, table=renderable)
    if fmt is not Format.table:
        stderr().print(verdict, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `why` to the app."""
    app.command("why", help=HELP, cls=Command,
                no_args_is_help=False)(why)
