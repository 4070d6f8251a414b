"""`xray-lake import`: OTLP JSON trace files into the lake, a run per trace."""

from __future__ import annotations

from typing import Annotated

import typer

from xray_lake.cli.help import Command
from xray_lake.cli.otlp_intake import LabelFrom, LabelFromOption, LabelOption, record_into
from xray_lake.cli.output import RootOption, StorageOption
from xray_lake.errors import XrayLakeError

HELP = (
    "Record OTLP JSON trace files (one ExportTraceServiceRequest per file, or one per line as "
    "the OpenTelemetry Collector's file exporter writes them) as runs, mapped as "
    "'xray-lake collect' maps them. Spans of one trace may be spread over several files. "
    "Exit code 1 if a file could not be read.\n\n"
    "Examples:\n\n"
    "  xray-lake import traces.json\n"
    "  xray-lake import --root /srv/lake exports/*.jsonl"
)


def import_traces(
    files: Annotated[list[str], typer.Argument(metavar="FILE", help="OTLP JSON files.")],
    root: RootOption = None,
    storage_option: StorageOption = None,
    label_from: LabelFromOption = LabelFrom.root,
    label: LabelOption = None,
) -> None:
    # first: it checks the otlp extra, which the modules imported below need
    lake_root, options = record_into(root, storage_option, label_from, label)
    import xray_lake as xr
    from xray_lake.otlp.files import import_files

    result = import_files(files, options)
    durable = xr.flush(120)
    for problem in result.bad_files:
        typer.echo(f"xray-lake import: {problem}", err=True)
    refused = sum(result.rejected.values())
    typer.echo(f"xray-lake import: {result.files} file(s), {result.spans} span(s) -> "
              f"{result.runs} run(s) in {lake_root}"
              + (f"; {refused} span(s) refused: " + "; ".join(
                  f"{n} {reason}" for reason, n in result.rejected.most_common())
                 if refused else ""), err=True)
    if not durable:
        raise XrayLakeError("the runs could not all be written: see the log and xr.stats()")
    if result.bad_files:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `import` to the app."""
    app.command("import", help=HELP, cls=Command, no_args_is_help=True)(import_traces)
