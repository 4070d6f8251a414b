"""The `xray-lake` console script (and `python -m xray_lake`): `main()`.

`xray-lake --version` and `xray-lake --help` are answered here without loading typer; everything else goes to the
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


def main() -> None:
    """Console-script entry: run the app; errors are one line on stderr (see the exit codes)."""
    if sys.argv[1:] == ["--version"]:  # the answers that need no parser
        sys.stdout.write(f"xray-lake {__version__}\n")
        return
    if sys.argv[1:] in (["--help"], ["-h"]):
        from xray_lake.cli.root_help import render

        sys.stdout.write(render())
        return
    from xray_lake.cli.root import app as root_app

    root_app(prog_name="xray-lake")


def __getattr__(name: str) -> Any:
    if name == "app":  # the typer app, for typer.testing.CliRunner and embedding
        from xray_lake.cli.root import app as root_app

        return root_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
