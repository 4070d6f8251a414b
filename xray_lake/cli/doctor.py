"""`xray-lake doctor`: report (and with --fix quarantine) lake files that would break queries."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from xray_lake.cli import resolve_root, root_flag, stdout
from xray_lake.cli.help import Command
from xray_lake.cli.output import OFFLINE_WIDTH, RootOption, StorageOption
from xray_lake.cli.progress import progress_bar
from xray_lake.errors import XrayLakeError

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    from xray_lake.storage.doctor import DoctorReport

HELP = (
    "Check every file of the lake: Parquet footer readable, columns of the table's types, "
    "partition folders label=…/date=YYYY-MM-DD, and temp files left by killed writers. "
    "With --fix, bad files move to <root>/_quarantine/ (same relative path, nothing deleted) "
    "and stale temp files are deleted. Dead letters (records the writer could not encode, "
    "set aside beside the spool) are listed, never fixed: read them, then delete them. "
    "Exit code 1 while problems remain.\n\n"
    "Examples:\n\n"
    "  xray-lake doctor\n"
    "  xray-lake doctor --fix --root /data/lake\n"
    "  xray-lake doctor --format json"
)


class DoctorFormat(StrEnum):
    """Report formats: a table for people, JSON for programs."""

    table = "table"
    json = "json"


def doctor(
    root: RootOption = None,
    storage_option: StorageOption = None,
    fix: Annotated[bool, typer.Option("--fix", help="Quarantine bad files and delete stale "
                                                    "temp files.")] = False,
    fmt: Annotated[DoctorFormat, typer.Option("--format", "-f", case_sensitive=False,
                                              help="table (default) or json.")] = (
        DoctorFormat.table),
) -> None:
    import orjson

    from xray_lake.storage.doctor import scan

    lake_root = resolve_root(root, storage_option)
    if "://" not in lake_root and not os.path.isdir(lake_root):
        raise XrayLakeError(f"no lake at {lake_root}: the folder does not exist (pass --root "
                            "or set XRAY_LAKE_ROOT)")
    with progress_bar("checking files") as advance:
        report = scan(lake_root, fix=fix, progress=advance)
    if fmt is DoctorFormat.json:
        typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print_table(report, fix)
    if not report.ok:
        raise typer.Exit(1)


def _print_table(report: DoctorReport, fix: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = stdout()
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out = Console(highlight=False, width=OFFLINE_WIDTH)  # a pipe: wide, so paths stay whole
    if report.problems:
        table = Table(show_edge=False, pad_edge=False)
        for name in ("problem", "file", "detail", *(["action"] if fix else [])):
            table.add_column(name, overflow="fold", no_wrap=name == "file")
        for p in report.problems:
            cells = [p.kind, p.path, p.detail, *([p.action] if fix else [])]
            table.add_row(*(escape(c) for c in cells))
        out.print(table)
    fixed = sum(p.fixed for p in report.problems)
    summary = (f"{report.files_checked} data files checked in {escape(report.root)}: "
               f"{_plural(len(report.problems), 'problem')}")
    if fix:
        summary += f", {fixed} fixed"
    if report.temps_in_use:
        summary += (f"; {_plural(report.temps_in_use, 'temp file')} still being written "
                    "(left alone)")
    out.print(summary, soft_wrap=True)
    letters = [p for p in report.remaining if p.kind == "dead_letter"]
    if len(letters) < len(report.remaining) and not fix:
        out.print(f"run `xray-lake doctor --fix{root_flag(report.root)}` to quarantine bad "
                  "files and delete stale temp files", soft_wrap=True, markup=False)
    if letters:
        out.print(f"{_plural(len(letters), 'dead letter')}: records the writer could not encode "
                  "(each file says why and holds the record); read them, fix the cause, then "
                  "delete them", soft_wrap=True, markup=False)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def register(app: typer.Typer) -> None:
    """Add `doctor` to the app."""
    app.command("doctor", help=HELP, cls=Command,
                no_args_is_help=False)(doctor)
