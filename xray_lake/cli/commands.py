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

TOPIC_LINES: dict[str, str] = {
    "storage": "S3 roots and the --storage-option keys every command takes.",
}
"""`xray-lake help TOPIC`: each topic's line in `--help` (cli/help.py writes the topics)."""

ROOT_HELP = (
    "An X-ray for multi-stage decision pipelines: query every run's stages, candidates, "
    "drops, scores and reasons in a Parquet lake.\n\n"
    "Examples:\n\n"
    "  xray-lake demo                      # record 200 demo runs into data/lake\n"
    "  xray-lake demo --root /tmp/lake     # ... or anywhere else\n"
    "  xray-lake runs --status failure --since 7d\n"
    "  xray-lake show RUN_ID               # the run's funnel\n"
    "  xray-lake why RUN_ID CANDIDATE_ID   # where and why a candidate was dropped\n"
    "  xray-lake query \"select label, count(*) from runs group by 1\"\n"
    "  xray-lake stats --since 7d --format csv\n\n"
    "Commands that read or write a lake take --root (a folder or s3://bucket/prefix; "
    "'xray-lake help storage' for S3); every command takes -h/--help.\n\n"
    "Exit codes: 0 ok, 1 data error (unreadable lake, no such run), 2 usage or query error."
)
"""The root command's description (`xray-lake --help`)."""
