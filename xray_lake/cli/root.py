"""The typer app behind `xray-lake`: commands loaded on demand, every error as one line.

`cli/commands.py` holds the command table, `cli/app.py` the console script's `main()`; a command module
exposes `register(app)` and is imported only when its command runs or prints its help, so
`xray-lake --help` loads no command module (and no engine: tests/test_cli_start.py).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from xray_lake._version import __version__
from xray_lake.cli import error_line
from xray_lake.cli.commands import COMMANDS, ROOT_HELP
from xray_lake.cli.help import Context, Formatter, Group
from xray_lake.errors import ConfigError, QueryError, XrayLakeError

USAGE_ERRORS: tuple[type[Exception], ...] = (QueryError, ConfigError)
DATA_ERRORS: tuple[type[Exception], ...] = (XrayLakeError, OSError)


def _duckdb_error(exc: Exception) -> bool:
    """Whether `exc` is a DuckDB error (never true while no command has loaded DuckDB)."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.Error)


class OneLineErrors(Group):
    """The root command: loads commands on demand, and turns every error into one line on
    stderr and an exit code.

    Overriding `main` (rather than wrapping the console script) makes `CliRunner`, `python -m`
    and the script behave the same. Typer's standalone mode would print usage errors as a
    multi-line panel and let other exceptions through as tracebacks.
    """

    def list_commands(self, ctx: Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: Context, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module_name, short_help = COMMANDS[cmd_name]
            sub = typer.Typer(add_completion=False, rich_markup_mode=None)
            importlib.import_module(module_name).register(sub)
            command = typer.main.get_command(sub)
            command.short_help = short_help
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Context, formatter: Formatter) -> None:
        """The command list from the table, without importing any command module."""
        rows = [(name, short) for name, (_module, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
        except DATA_ERRORS as exc:
            code = _fail(error_line(exc), 1)
        except Exception as exc:
            if _duckdb_error(exc):  # what the lake did not translate: its first line says it
                code = _fail(str(exc).strip().splitlines()[0] if str(exc).strip() else
                             type(exc).__name__, 1)
            elif os.environ.get("XRAY_LAKE_DEBUG"):
                raise
            else:
                code = _fail(f"internal error: {type(exc).__name__}: {error_line(exc)} "
                             "(set XRAY_LAKE_DEBUG=1 to see the traceback)", 1)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"xray-lake: error: {message}\n")
    sys.stderr.flush()
    return code


def _click_error(exc: typer.TyperException) -> int:
    code = int(getattr(exc, "exit_code", 1))
    show = getattr(exc, "show", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and show is not None:
        show()  # `xray-lake` alone, or a command that needs arguments: the help, on stderr
        return code
    format_message = getattr(exc, "format_message", None)
    message = error_line(Exception(format_message() if format_message else str(exc)))
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and code == 2:
        message += f" (see '{ctx.command_path} --help')"
    return _fail(message, code)

app = typer.Typer(
    name="xray-lake",
    help=ROOT_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: rich loads only when a command prints a table
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
