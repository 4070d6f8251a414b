"""`import xray_lake` for recording loads no query engine and no writer: they load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pyarrow", "polars", "duckdb", "sqlglot", "numpy", "pydantic", "typer", "rich")


def _modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_sdk_and_decorating_a_pipeline_loads_no_heavy_module() -> None:
    loaded = _modules_after(
        "import xray_lake as xr\n"
        "@xr.filtering_stage('f', id='id', passed='ok')\n"
        "def f(items: list) -> list:\n"
        "    return items\n"
        "xr.configure(root='unused-lake', enabled=False)\n")
    assert [m for m in HEAVY if m in loaded] == []


@pytest.mark.slow
def test_the_query_side_loads_its_engines_on_first_use() -> None:
    loaded = _modules_after("import xray_lake as xr\nxr.Lake\n")
    assert "duckdb" in loaded and "polars" in loaded
