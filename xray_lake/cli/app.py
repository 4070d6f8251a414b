"""The typer app behind `xray-lake` and `python -m xray_lake`; commands live in their own modules.

A command module exposes `register(app)`; add it to `COMMANDS` below.

Exit codes: 0 success; 2 usage errors (bad arguments, bad JSON, a query DuckDB or the JSON
language rejects, invalid settings); 1 data errors (unreadable lake file, I/O, no such
run). Either way the error is one line on stderr, never a traceback
(`XRAY_LAKE_DEBUG=1` re-raises unexpected errors, for bug reports).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import duckdb
import typer
from typer.core import TyperGroup

from xray_lake import __version__
from xray_lake.cli import (
    check,
    compact,
    ddl,
    demo,
    doctor,
    error_line,
    query,
    replay,
    runs,
    show,
    stats,
    stderr,
    why,
)
from xray_lake.errors import ConfigError, QueryError, XrayLakeError

USAGE_ERRORS: tuple[type[Exception], ...] = (QueryError, ConfigError)
DATA_ERRORS: tuple[type[Exception], ...] = (XrayLakeError, OSError)


class OneLineErrors(TyperGroup):
    """The root command: turns every error into one line on stderr and an exit code.

    Overriding `main` (rather than wrapping the console script) makes `CliRunner`, `python -m`
    and the script behave the same. Typer's standalone mode would print usage errors as a
    multi-line panel and let other exceptions through as tracebacks.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  windows_expand_args=windows_expand_args, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except typer.Abort:
            code = _fail("aborted", 1)
        except typer.TyperException as exc:  # click's errors: usage (exit 2) and file errors
            code = _click_error(exc)
        except USAGE_ERRORS as exc:
            code = _fail(error_line(exc), 2)
        except duckdb.Error as exc:  # what the lake did not translate: its first line says it
            code = _fail(str(exc).strip().splitlines()[0] if str(exc).strip() else
                         type(exc).__name__, 1)
        except DATA_ERRORS as exc:
            code = _fail(error_line(exc), 1)
        except Exception as exc:
            if os.environ.get("XRAY_LAKE_DEBUG"):
                raise
            code = _fail(f"internal error: {type(exc).__name__}: {error_line(exc)} "
                         "(set XRAY_LAKE_DEBUG=1 to see the traceback)", 1)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str, code: int) -> int:
    stderr().print(f"xray-lake: error: {message}", markup=False, soft_wrap=True)
    return code


def _click_error(exc: typer.TyperException) -> int:
    code = int(getattr(exc, "exit_code", 1))
    if type(exc).__name__ == "NoArgsIsHelpError":
        return code  # the help was printed when the error was made
    format_message = getattr(exc, "format_message", None)
    message = error_line(Exception(format_message() if format_message else str(exc)))
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and code == 2:
        message += f" (see '{ctx.command_path} --help')"
    return _fail(message, code)

app = typer.Typer(
    name="xray-lake",
    help=(
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
        "Exit codes: 0 ok, 1 data error (unreadable lake, no such run), 2 usage or query error."
    ),
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = (demo, runs, show, why, query, stats, compact, replay, doctor, ddl, check)
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
    """Console-script entry: run the app; errors are one line on stderr (see the exit codes)."""
    app(prog_name="xray-lake")
