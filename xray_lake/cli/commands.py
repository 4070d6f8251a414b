"""The command table of `xray-lake`: each command's module and its line in `--help`.

Its own module so that the console script (`cli/app.py`) and the typer app (`cli/root.py`)
both read it without importing each other.
"""

from __future__ import annotations

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
