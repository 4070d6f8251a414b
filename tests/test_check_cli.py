"""`xray-lake check MODULE`: what a module instruments, and its mistakes, before anything runs."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from xray_lake.cli.app import app

REPO = Path(__file__).parent.parent
_names = itertools.count()


pytestmark = pytest.mark.usefixtures("plugin_registry")


def module_file(tmp_path: Path, source: str) -> Path:
    """A module with a name no other test uses (check imports it into this process)."""
    path = tmp_path / f"xray_check_case_{next(_names)}.py"
    path.write_text(textwrap.dedent(source))
    return path


def check(*args: str) -> Result:
    return CliRunner().invoke(app, ["check", *args])


PIPELINE = """
    from typing import Annotated, Any
    import xray_lake as xr

    @xr.pipeline("shop", id="run_id")
    class Shop:
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id

        @xr.entrypoint
        def answer(self, query: str) -> list[dict[str, Any]]:
            return self.keep(self.search(query))

        @xr.retrieval_stage("search", id="sku")
        def search(self, query: str) -> list[dict[str, Any]]:
            return []

        @xr.filtering_stage("in-stock", id="sku", passed="ok", reason_label="why")
        def keep(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return items
"""


def test_check_lists_pipelines_entrypoints_and_stages_with_their_mappings(
        tmp_path: Path) -> None:
    path = module_file(tmp_path, PIPELINE)
    result = check(str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["problems"] == []
    found = [(d["kind"], d["name"], d["type"]) for d in report["declared"]]
    assert found == [("pipeline", "shop", "class"), ("entrypoint", "answer", None),
                     ("stage", "search", "retrieval"), ("stage", "in-stock", "filtering")]
    keep = report["declared"][3]
    assert keep["qualname"] == f"{path.stem}.Shop.keep"
    assert keep["where"] == f"{path}:18"
    assert keep["fields"] == {"id": "sku", "passed": "ok", "reason_label": "why"}
    assert report["declared"][0]["where"] == f"{path}:5"  # a class's line, found at report time


def test_check_prints_a_table_and_a_summary(tmp_path: Path) -> None:
    result = check(str(module_file(tmp_path, PIPELINE)))
    assert result.exit_code == 0
    assert "in-stock" in result.stdout and "filtering" in result.stdout
    assert "1 pipeline, 1 entrypoint, 2 stages, 0 problems" in result.stdout


def test_a_decoration_error_is_reported_as_a_problem(tmp_path: Path) -> None:
    path = module_file(tmp_path, """
        import xray_lake as xr

        @xr.retrieval_stage("search")
        def search(query: str) -> list[dict]:
            return []

        @xr.scoring_stage("score")
        def score(items: list[dict]) -> list[xr.Filtered[dict]]:
            return []
    """)
    result = check(str(path))
    assert result.exit_code == 1
    assert "problem: a scoring stage returns xr.Filtered" in result.stdout
    assert f"{path.stem}.score ({path}:8). Fix:" in result.stdout
    assert "search" in result.stdout  # what was decorated before the error is still listed


def test_pipelines_without_entrypoints_and_names_used_twice_are_problems(
        tmp_path: Path) -> None:
    path = module_file(tmp_path, """
        import xray_lake as xr

        @xr.pipeline("orphan")
        class Orphan:
            @xr.ranking_stage("step")
            def rank(self, items: list[dict]) -> list[dict]:
                return items

        @xr.filtering_stage("step")
        def filter_step(items: list[dict]) -> list[dict]:
            return items
    """)
    report = json.loads(check(str(path), "-f", "json").stdout)
    assert len(report["problems"]) == 2
    assert "pipeline 'orphan'" in report["problems"][0]
    assert "has no @xr.entrypoint method" in report["problems"][0]
    assert "stage name 'step' is used with 2 types (ranking at" in report["problems"][1]


def test_custom_types_and_plugins_are_listed(tmp_path: Path) -> None:
    result = check(str(REPO / "examples" / "llm_judge.py"), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    judge = next(d for d in report["declared"] if d["name"] == "relevance-judge")
    assert judge["type"] == "llm_judge"
    assert judge["fields"] == {"id": "sku", "verdict": "verdict", "rationale": "rationale",
                               "keep": "keep", "confidence": "confidence"}
    assert report["stage_types"] == [{
        "name": "llm_judge", "base": "filtering",
        "fields": {"verdict": "reason_label", "rationale": "reason_text", "keep": "passed",
                   "confidence": None},
        "required": ["verdict", "rationale"]}]
    assert {(m["stage_type"], m["name"]) for m in report["metrics"]} == {
        ("llm_judge", "reject_share"), ("llm_judge", "confidence")}


def test_a_dotted_module_is_imported_from_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / f"xray_check_pkg_{next(_names)}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "pipes.py").write_text(textwrap.dedent(PIPELINE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = check(f"{package.name}.pipes", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["declared"]) == 4


def test_nothing_is_recorded_while_the_module_is_imported(tmp_path: Path,
                                                          isolated_lake: str) -> None:
    path = module_file(tmp_path, """
        import xray_lake as xr

        @xr.raw_stage("at-import")
        def step() -> int:
            return 1

        step()
        assert xr.flush(5)
    """)
    assert check(str(path)).exit_code == 0
    assert not Path(isolated_lake).exists()


def test_import_failures_are_one_line_and_exit_1(tmp_path: Path) -> None:
    broken = module_file(tmp_path, "import xray_no_such_dependency\n")
    result = check(str(broken))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "cannot import" in result.stderr and "ModuleNotFoundError" in result.stderr
    syntax = module_file(tmp_path, "def broken(:\n")
    result = check(str(syntax))
    assert result.exit_code == 1 and "SyntaxError" in result.stderr
    assert f"{syntax}:1" in result.stderr


def test_a_module_that_cannot_be_found_is_a_usage_error(tmp_path: Path) -> None:
    result = check(str(tmp_path / "missing.py"))
    assert result.exit_code == 2 and "no such file" in result.stderr
    result = check("xray_no_such_package.pipes")
    assert result.exit_code == 2 and "no module named 'xray_no_such_package.pipes'" in result.stderr


def test_check_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["check", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "xray-lake check" in result.stdout
