"""`xray-lake collect`: receive OTLP/HTTP traces (OpenInference spans) into the lake."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from xray_lake.cli.help import Command
from xray_lake.cli.otlp_intake import LabelFrom, LabelFromOption, LabelOption, record_into
from xray_lake.cli.output import RootOption, StorageOption

HELP = (
    "Receive OpenTelemetry traces over OTLP/HTTP (POST /v1/traces, protobuf or JSON) and "
    "record each trace as a run: OpenInference RETRIEVER spans become retrieval stages with "
    "one candidate row per document, RERANKER spans ranking stages, other spans raw stages.\n\n"
    "A trace is written once its root span has arrived and no span of it came for --idle "
    "seconds (or --max-wait seconds after its first span, root or not); Ctrl-C writes what "
    "is buffered and exits. Binds 127.0.0.1 unless --host says otherwise. Needs the otlp "
    "extra: pip install 'xray-lake[otlp]'.\n\n"
    "Examples:\n\n"
    "  xray-lake collect\n"
    "  xray-lake collect --root /srv/lake --port 4318\n"
    "  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces python app.py"
)


def collect(
    root: RootOption = None,
    storage_option: StorageOption = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port (0: a free one, printed).")] = 4318,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    idle: Annotated[float, typer.Option("--idle", min=0.0, metavar="SECONDS",
                                        help="Quiet time after a trace's root span before "
                                             "it is written.")] = 1.0,
    max_wait: Annotated[float, typer.Option("--max-wait", min=0.0, metavar="SECONDS",
                                            help="Longest wait for a trace's root span.")] = 30.0,
    label_from: LabelFromOption = LabelFrom.root,
    label: LabelOption = None,
) -> None:
    # first: it checks the otlp extra, which the modules imported below need
    lake_root, options = record_into(root, storage_option, label_from, label)
    from xray_lake.loopback import is_loopback
    from xray_lake.otlp.buffer import Timing
    from xray_lake.otlp.collect import start

    if not is_loopback(host):
        typer.echo(f"xray-lake collect: warning: binding {host}, not a loopback address: anyone "
                  "who reaches this port can write runs into the lake (the receiver has no "
                  "authentication)", err=True)
    running = start(host, port, timing=Timing(idle, max_wait), options=options)
    typer.echo(f"xray-lake collect: listening on {running.url}, writing to {lake_root} "
              "(Ctrl-C to stop)", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    ok = running.close()
    counts = running.server.stats()
    typer.echo("xray-lake collect: stopped; "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), err=True)
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `collect` to the app."""
    app.command("collect", help=HELP, cls=Command, no_args_is_help=False)(collect)
