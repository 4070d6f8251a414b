"""`xray-lake compact`: merge each partition's small Parquet files into large sorted ones."""

from __future__ import annotations

import datetime as _dt
import re
from typing import TYPE_CHECKING, Annotated

import typer

from xray_lake.cli import resolve_root, stderr, stdout
from xray_lake.cli.help import Command
from xray_lake.cli.output import RootOption, StorageOption, human_bytes
from xray_lake.cli.progress import progress_bar

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    from xray_lake.storage.compaction.report import CompactionReport

HELP = (
    "Merge the small files of each partition (table x label x date) into large files sorted "
    "by run, so queries open fewer files.\n\n"
    "Long-running services write one small file per process per flush; run this from cron "
    "(hourly or daily). Today's partitions (UTC) are left alone unless --before says "
    "otherwise: they are still being written. Safe while pipelines write and while readers "
    "use xray-lake (`xr.Lake`, every command): they never see a row twice or miss one. A "
    "reader with no xray-lake code (a raw DuckDB or polars glob) may count a partition's rows "
    "twice for the moment between a merged file appearing and its sources being deleted. Two "
    "compactions at once share the work: each partition is locked by one of them. A "
    "compaction killed half-way is finished or undone by the next one.\n\n"
    "Examples:\n\n"
    "  xray-lake compact\n"
    "  xray-lake compact --label fashion_search --before 2024-06-01\n"
    "  xray-lake compact --target-size 256MB --root /srv/lake\n"
    "  xray-lake compact --root /srv/lake     # nightly, from cron"
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """`128MB`, `1.5g`, `512KiB` or plain bytes; units are binary (1 MB = 2**20 bytes)."""
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise typer.BadParameter(
            f"{text!r} is not a size: use bytes or a number with KB, MB or GB, e.g. 128MB"
        )
    return max(1, int(float(match.group(1)) * _UNITS[match.group(2).lower()]))


def parse_date(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is None:
            raise ValueError(text)
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2024-06-01") \
            from None


def _summary(report: CompactionReport, target_size: int) -> list[str]:
    lines: list[str] = []
    if report.partitions:
        lines.append(
            f"Compacted {len(report.partitions)} partitions before {report.before}: "
            f"{report.files_in:,} files -> {report.files_out:,} ({report.rows:,} rows), "
            f"{human_bytes(report.bytes_in)} -> {human_bytes(report.bytes_out)} "
            f"in {report.seconds:.1f}s"
        )
    else:
        lines.append(
            f"Nothing to compact: no partition before {report.before} has 2 or more files "
            f"under {human_bytes(target_size // 2)}."
        )
    if report.locked:
        lines.append(f"Skipped {len(report.locked)} partitions another compaction is working "
                     f"on: {', '.join(report.locked[:3])}{' ...' if len(report.locked) > 3 else ''}")
    if report.rolled_back or report.rolled_forward:
        lines.append(f"Recovered interrupted compactions: {report.rolled_back} undone, "
                     f"{report.rolled_forward} finished.")
    return lines


def compact_command(
    label: Annotated[str | None, typer.Option(
        "--label", metavar="LABEL", help="Only this pipeline label's partitions.")] = None,
    before: Annotated[str | None, typer.Option(
        "--before", metavar="DATE", show_default="today (UTC)",
        help="Only partitions dated before DATE (YYYY-MM-DD).")] = None,
    target_size: Annotated[str, typer.Option(
        "--target-size", metavar="SIZE",
        help="Size of the merged files; files under half of it count as small. Binary units: "
             "1MB = 2**20 bytes.")] = "128MB",
    root: RootOption = None,
    storage_option: StorageOption = None,
) -> None:
    from rich.markup import escape

    from xray_lake.storage.compaction.api import compact

    lake_root = resolve_root(root, storage_option)
    size = parse_size(target_size)
    cutoff = parse_date(before)
    with progress_bar("compacting partitions") as advance:
        report = compact(lake_root, label=label, before=cutoff, target_size=size,
                         progress=advance)
    out, err = stdout(), stderr()
    for line in _summary(report, size):
        out.print(escape(line), soft_wrap=True)
    for error in report.errors:
        err.print(f"xray-lake: error: {error}", markup=False, soft_wrap=True)
    if report.errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `compact` to the app."""
    app.command("compact", help=HELP, cls=Command,
                no_args_is_help=False)(compact_command)
