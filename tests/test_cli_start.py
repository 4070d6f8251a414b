"""The CLI's import budget: `--help` (of the app and of every command) and `--version` load no
engine, so they start in the interpreter's and typer's time (benchmarks/cli_start.py times it).

Checked on the modules a fresh interpreter holds afterwards, not on wall time (the machine
is shared). The CLI is a subpackage, so `import xray_lake` runs first: while the package's
`__init__` itself imports an engine, the absolute checks are expected failures (the CLI's
own share is still checked, against what `import xray_lake` loads).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xray_lake.cli.commands import COMMANDS

pytestmark = pytest.mark.slow  # each test starts fresh interpreters, a few seconds on 2 cores

ENGINES = frozenset({"polars", "duckdb", "pyarrow", "sqlglot", "numpy"})

PROBE = """
import contextlib, io, json, sys
from xray_lake.cli.app import main
for argv in json.loads(sys.argv[1]):
    sys.argv = ["xray-lake", *argv]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main()
        except SystemExit as exit_:
            assert not exit_.code, (argv, exit_.code)
    assert out.getvalue().strip(), argv
print(json.dumps(sorted(sys.modules)))
"""


def _modules(code: str, *args: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after running `code`."""
    done = subprocess.run([sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return {name.partition(".")[0] for name in json.loads(done.stdout)}


def loaded_after(*argvs: list[str]) -> set[str]:
    """... after running each argv through the console script's main()."""
    return _modules(PROBE, json.dumps(argvs))


def package_import() -> set[str]:
    """... after `import xray_lake` alone."""
    return _modules("import json, sys, xray_lake; print(json.dumps(sorted(sys.modules)))")


def assert_no_engine(loaded: set[str]) -> None:
    engines = loaded & ENGINES
    if engines and package_import() & ENGINES:
        pytest.xfail(f"`import xray_lake` itself loads {sorted(package_import() & ENGINES)}")
    assert not engines, sorted(engines)


def test_help_loads_no_engine_and_no_rich() -> None:
    loaded = loaded_after(["--help"], ["help"])
    assert "rich" not in loaded
    assert_no_engine(loaded)


def test_every_commands_help_loads_no_engine() -> None:
    assert_no_engine(loaded_after(*([name, "--help"] for name in COMMANDS)))


def test_version_loads_not_even_typer() -> None:
    loaded = loaded_after(["--version"])
    assert loaded.isdisjoint({"typer", "rich"}), sorted(loaded & {"typer", "rich"})
    assert_no_engine(loaded)


def test_help_adds_nothing_heavy_to_the_package_import() -> None:
    added = loaded_after(["--help"], *([name, "--help"] for name in COMMANDS)) \
        - package_import()
    assert added.isdisjoint({*ENGINES, "rich", "pydantic", "orjson"}), sorted(added)
