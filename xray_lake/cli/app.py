"""The typer app behind `xray-lake` and `python -m xray_lake`; commands live in their own modules.

A command module exposes `register(app)`; add it to `COMMANDS` below.
"""

from __future__ import annotations

from typing import Annotated

import typer

from xray_lake import __version__
from xray_lake.cli import demo, error_line, stderr
from xray_lake.errors import XrayLakeError

app = typer.Typer(
    name="xray-lake",
    help=(
        "An X-ray for multi-stage decision pipelines: query every run's stages, candidates, "
        "drops, scores and reasons in a Parquet lake.\n\n"
        "Examples:\n\n"
        "  xray-lake demo                      # record 200 demo runs into data/lake\n"
        "  xray-lake demo --root /tmp/lake     # ... or anywhere else\n"
        "  XRAY_LAKE_ROOT=/tmp/lake xray-lake demo --runs 50"
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = (demo,)
for _module in COMMANDS:
    _module.register(app)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"xray-lake {__version__}")
        raise typer.Exit()


@app.callback()
def _root_callback(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Global options (each command also takes --root)."""


def main() -> None:
    """Console-script entry: run the app; an expected error is one line on stderr, exit 1."""
    try:
        app(prog_name="xray-lake")
    except (XrayLakeError, OSError) as exc:
        stderr().print(f"xray-lake: error: {error_line(exc)}", markup=False, soft_wrap=True)
        raise SystemExit(1) from None
