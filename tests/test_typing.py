"""Decorated callables keep their signatures for type checkers: mypy on tests/typing/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

TYPING = Path(__file__).parent / "typing"
REPO = Path(__file__).parent.parent
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def _expected_errors(path: Path) -> dict[int, set[str]]:
    """Line -> error codes, from `# expect: code[, code]` comments."""
    found: dict[int, set[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if "# expect: " in line:
            found[n] = {c.strip() for c in line.rsplit("# expect: ", 1)[1].split(",")}
    return found


@pytest.mark.slow
def test_mypy_accepts_decorated_signatures_and_rejects_wrong_calls() -> None:
    check, fail = TYPING / "check_signatures.py", TYPING / "fail_wrong_args.py"
    # stage results: sequences and each stage type's own helper pass, the rest is rejected
    results, wrong = TYPING / "pass_stage_results.py", TYPING / "fail_stage_results.py"
    # One mypy process for both files: the checker's start-up dominates the time.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental",
         "--config-file", str(TYPING / "mypy.ini"), "--no-error-summary",
         "--show-error-codes", "--hide-error-context", "--no-pretty",
         *(str(f.relative_to(REPO)) for f in (check, fail, results, wrong))],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    errors: dict[str, dict[int, set[str]]] = {}
    for line in proc.stdout.splitlines():
        if match := _ERROR.match(line):
            by_line = errors.setdefault(Path(match["file"]).name, {})
            by_line.setdefault(int(match["line"]), set()).add(match["code"])

    assert proc.returncode == 1, proc.stdout + proc.stderr
    # Errors inside xray_lake itself are `mypy xray_lake`'s business, not this test's.
    assert "check_signatures.py" not in errors, proc.stdout
    assert results.name not in errors, proc.stdout
    expected = _expected_errors(fail)
    assert {"arg-type", "call-arg"} <= set().union(*expected.values())
    assert errors.get("fail_wrong_args.py") == expected, proc.stdout
    assert {"type-var"} <= set().union(*_expected_errors(wrong).values())
    assert errors.get(wrong.name) == _expected_errors(wrong), proc.stdout


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
        assert lines.get(fail.name) == set(_expected_errors(fail)), report
