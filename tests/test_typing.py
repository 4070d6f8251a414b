"""Decorated callables keep their signatures for type checkers: mypy on tests/typing/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_mypy_accepts_decorated_signatures_and_rejects_wrong_calls() -> None:
    check, fail = TYPING / "check_signatures.py", TYPING / "fail_wrong_args.py"
    # One mypy process for both files: the checker's start-up dominates the time.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental",
         "--config-file", str(TYPING / "mypy.ini"), "--no-error-summary",
         "--show-error-codes", "--hide-error-context", "--no-pretty",
         str(check.relative_to(REPO)), str(fail.relative_to(REPO))],
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
    expected = _expected_errors(fail)
    assert {"arg-type", "call-arg"} <= set().union(*expected.values())
    assert errors.get("fail_wrong_args.py") == expected, proc.stdout
