"""The `xray-lake` command line: one typer app (`cli.app`), one module per command group.

What every command shares lives here and in `cli/output.py` (the options, `--root` among
them): the root, the consoles, and one-line error reporting. Conventions:

* every command takes `--root PATH` (env `XRAY_LAKE_ROOT`, else the settings' root) and
  `--storage-option KEY=VALUE` (repeatable) for `s3://` roots; the storage options are
  described once, by `xray-lake help storage`, not in each command's help;
* `xray-lake --help` must not load an engine: modules of this package import only typer
  and the standard library at the top (this one not even typer), and polars, DuckDB, rich,
  pyarrow and the settings inside the functions that use them (tests/test_cli_start.py
  holds the budget);
* results go to stdout, progress and errors to stderr;
* an expected failure (`XrayLakeError`, `OSError`) is one line on stderr and exit code 1,
  never a traceback (`app.main` catches them at the top);
* each command's help ends with examples.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

def resolve_root(root: str | None, storage_options: list[str] | None = None) -> str:
    """The root a command works on: `--root`, else `$XRAY_LAKE_ROOT`, else the settings' root.

    `--storage-option KEY=VALUE` values are validated and added to the settings, so the lake,
    compaction, doctor and replay of this command all connect with them.
    """
    from xray_lake.config import configure, get_settings

    if storage_options:
        import typer

        parsed: dict[str, str] = {}
        for item in storage_options:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise typer.BadParameter(
                    f"{item!r} is not KEY=VALUE, e.g. --storage-option "
                    "endpoint_url=http://127.0.0.1:8333", param_hint="--storage-option")
            parsed[key.strip()] = value
        configure(storage_options={**get_settings().storage_options, **parsed})
    return root or get_settings().root


def root_flag(root: str) -> str:
    """` --root ROOT` for commands printed as suggestions, or '' when ROOT is the default."""
    from xray_lake.config import DEFAULT_ROOT

    default = os.environ.get("XRAY_LAKE_ROOT") or DEFAULT_ROOT
    return "" if root == default else f" --root {shlex.quote(root)}"


def stdout() -> Console:
    """Console for results (made per call so test runners that swap sys.stdout see output)."""
    from rich.console import Console

    return Console(highlight=False)


def stderr() -> Console:
    """Console for progress, warnings and errors."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def error_line(exc: BaseException) -> str:
    """One readable line for an expected error (no traceback, no errno noise)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


__all__ = [
    "error_line",
    "resolve_root",
    "root_flag",
    "stderr",
    "stdout",
]
