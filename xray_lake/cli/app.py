"""The `xray-lake` console script (and `python -m xray_lake`): `main()` and the command table.

`xray-lake --version` is answered here without loading typer; everything else goes to the
typer app in `cli/root.py` (`app` is importable from this module too), which imports a
command's module only when that command runs or prints its help.

Exit codes: 0 success; 2 usage errors (bad arguments, bad JSON, a query DuckDB or the JSON
language rejects, invalid settings); 1 data errors (unreadable lake file, I/O, no such
run). Either way the error is one line on stderr, never a traceback
(`XRAY_LAKE_DEBUG=1` re-raises unexpected errors, for bug reports).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from xray_lake._version import __version__

if TYPE_CHECKING:
    import typer

    app: typer.Typer

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("xray_lake.cli.demo",
             "Record demo runs into a lake and answer the headline question."),
    "runs": ("xray_lake.cli.runs", "List runs, newest first, by label, status and time window."),
    "show": ("xray_lake.cli.show", "Show a run's funnel, stage by stage."),
    "why": ("xray_lake.cli.why", "Follow one candidate through a run: where it stopped, and why."),
    "query": ("xray_lake.cli.query", "Answer a question with SQL or the JSON query language."),
    "stats": ("xray_lake.cli.stats",
              "Summarise stages over a time window: fail ratios, durations, top reasons."),
    "compact": ("xray_lake.cli.compact", "Merge each partition's small files into large ones."),
    "replay": ("xray_lake.cli.replay",
               "Move what the writer spooled while the lake was unreachable into it."),
    "doctor": ("xray_lake.cli.doctor", "Check the lake's files; --fix quarantines bad ones."),
    "ddl": ("xray_lake.cli.ddl", "Print table definitions for Spark, Trino, Athena or DuckDB."),
    "ui": ("xray_lake.cli.ui", "Serve a local, read-only web view of the lake."),
    "check": ("xray_lake.cli.check",
              "Report the pipelines and stages a module instruments, and its problems."),
    "collect": ("xray_lake.cli.collect",
                "Receive OTLP/HTTP traces (OpenInference spans) as runs into the lake."),
    "import": ("xray_lake.cli.import_traces", "Record OTLP JSON trace files as runs."),
    "help": ("xray_lake.cli.help", "Show help on a topic (storage) or a command."),
}
"""Command name -> (its module, which exposes `register(app)`; its line in `--help`)."""


def main() -> None:
    """Console-script entry: run the app; errors are one line on stderr (see the exit codes)."""
    if sys.argv[1:] == ["--version"]:  # the one answer that needs no parser
        sys.stdout.write(f"xray-lake {__version__}\n")
        return
    from xray_lake.cli.root import app as root_app

    root_app(prog_name="xray-lake")


def __getattr__(name: str) -> Any:
    if name == "app":  # the typer app, for typer.testing.CliRunner and embedding
        from xray_lake.cli.root import app as root_app

        return root_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
