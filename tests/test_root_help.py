"""`xray-lake --help` is answered without typer: its text must stay the typer app's own."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from xray_lake.cli.root import app
from xray_lake.cli.root_help import render


@pytest.mark.parametrize("columns", [50, 60, 80, 100, 200])  # click never goes under 50
def test_the_light_root_help_is_the_typer_apps_help(columns: int) -> None:
    typer_help = CliRunner().invoke(app, ["--help"], terminal_width=columns)
    assert typer_help.exit_code == 0
    assert render(columns) == typer_help.output  # an explicit width is taken as it is


def test_the_light_root_help_takes_clicks_width_from_the_terminal() -> None:
    done = subprocess.run([sys.executable, "-m", "xray_lake", "--help"], capture_output=True,
                          text=True, timeout=60, check=True, env={"COLUMNS": "60", "PATH": ""})
    assert done.stdout == render(58)  # click: min(columns, 80) - 2, at least 50


def test_help_loads_no_typer() -> None:
    code = ("import sys; from xray_lake.cli.app import main; sys.argv = ['xray-lake', '--help'];"
            " main(); print('TYPER', 'typer' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.startswith("Usage: xray-lake [OPTIONS] COMMAND [ARGS]...")
    assert "TYPER False" in done.stderr
