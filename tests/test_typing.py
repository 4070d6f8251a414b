"""Decorated callables keep their signatures for type checkers: mypy on tests/typing/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._mypy import REPO, TYPING, expected_errors, run_mypy


@pytest.mark.slow
def test_mypy_accepts_decorated_signatures_and_rejects_wrong_calls() -> None:
    check, fail = TYPING / "check_signatures.py", TYPING / "fail_wrong_args.py"
    # stage results: sequences and each stage type's own helper pass, the rest is rejected
    results, wrong = TYPING / "pass_stage_results.py", TYPING / "fail_stage_results.py"
    # One mypy process for all four files: the checker's start-up dominates the time.
    returncode, errors, output = run_mypy(TYPING / "mypy.ini", check, fail, results, wrong)
    assert returncode == 1, output
    # Errors inside xray_lake itself are `mypy xray_lake`'s business, not this test's.
    assert "check_signatures.py" not in errors, output
    assert results.name not in errors, output
    expected = expected_errors(fail)
    assert {"arg-type", "call-arg"} <= set().union(*expected.values())
    assert errors.get("fail_wrong_args.py") == expected, output
    assert {"type-var"} <= set().union(*expected_errors(wrong).values())
    assert errors.get(wrong.name) == expected_errors(wrong), output


def test_pyright_rejects_the_same_stage_results_when_it_is_installed() -> None:
    """pyright, when installed (`pip install pyright`; it fetches its Node package on first
    use): the stage-result cases pass and fail on exactly the lines mypy's do."""
    results, wrong = TYPING / "pass_stage_results.py", TYPING / "fail_stage_results.py"
    wrong_args = TYPING / "fail_wrong_args.py"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pyright", "--outputjson",
             *(str(f.relative_to(REPO)) for f in (results, wrong, wrong_args))],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        report = json.loads(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        pytest.skip("pyright is not installed or cannot start here")
    lines: dict[str, set[int]] = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            lines.setdefault(Path(diagnostic["file"]).name, set()).add(
                diagnostic["range"]["start"]["line"] + 1)
    assert results.name not in lines, report
    for fail in (wrong, wrong_args):
        assert lines.get(fail.name) == set(expected_errors(fail)), report
