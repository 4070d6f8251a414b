"""`xray-lake ui`: serve a local, read-only web view of the lake (xray_lake/ui)."""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated

import typer

from xray_lake.cli import resolve_root
from xray_lake.cli.help import Command
from xray_lake.cli.output import RootOption, StorageOption
from xray_lake.errors import XrayLakeError

UI_PACKAGES = ("starlette", "jinja2", "uvicorn")

HELP = (
    "Serve a read-only web view of the lake and print its URL: runs (filters, the JSON "
    "query language, saved views), each run's funnel, a stage's candidates and score "
    "histogram, a candidate's journey, trends per label, and a read-only SQL box. Every page "
    "has its state in the URL, so it can be pasted into a bug report. Nothing it serves can "
    "write, or read outside the lake.\n\n"
    "It listens on 127.0.0.1 (this machine only) unless --host says otherwise, and warns "
    "when it does. Needs the ui extra: pip install 'xray-lake[ui]'.\n\n"
    "Examples:\n\n"
    "  xray-lake ui\n"
    "  xray-lake ui --root /tmp/demo-lake --port 8800\n"
    "  xray-lake ui --port 0                # any free port"
)


def missing_packages() -> list[str]:
    """The `[ui]` extra's packages this interpreter cannot import."""
    return [name for name in UI_PACKAGES if importlib.util.find_spec(name) is None]


def ui(
    root: RootOption = None,
    storage_option: StorageOption = None,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDRESS",
        help="Address to listen on; anything but loopback lets other machines read the "
             "lake.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", "-p", min=0, max=65535, metavar="PORT",
        help="Port to listen on; 0 picks a free one.")] = 8765,
) -> None:
    missing = missing_packages()
    if missing:
        raise XrayLakeError(
            f"xray-lake ui needs {', '.join(missing)} (the ui extra): "
            "pip install 'xray-lake[ui]'")
    lake_root = resolve_root(root, storage_option)
    if "://" not in lake_root and not os.path.isdir(lake_root):
        raise XrayLakeError(f"no lake at {lake_root}: the folder does not exist (pass --root "
                            "or set XRAY_LAKE_ROOT; `xray-lake demo` creates one)")
    from xray_lake.ui.serve import serve

    serve(lake_root, host, port)


def register(app: typer.Typer) -> None:
    """Add `ui` to the app."""
    app.command("ui", help=HELP, cls=Command, no_args_is_help=False)(ui)
