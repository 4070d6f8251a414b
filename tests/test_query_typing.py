"""The builder's columns are typed: mypy accepts correct queries and rejects mistyped ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TYPING = Path(__file__).parent / "typing"
REPO = Path(__file__).parent.parent
PASS, FAIL = TYPING / "pass_builder_types.py", TYPING / "fail_builder_types.py"
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def _expected_errors(path: Path) -> dict[int, set[str]]:
    """Line -> error codes, from `# expect: code[, code]` comments."""
    found: dict[int, set[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if "# expect: " in line:
            found[number] = {c.strip() for c in line.rsplit("# expect: ", 1)[1].split(",")}
    return found


def _mypy(config: Path, *files: Path) -> tuple[int, dict[str, dict[int, set[str]]], str]:
    """Run mypy once over `files` (its start-up dominates); errors by file name and line."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental",
         "--config-file", str(config), "--no-error-summary",
         "--show-error-codes", "--hide-error-context", "--no-pretty",
         *(str(f.relative_to(REPO)) for f in files)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    errors: dict[str, dict[int, set[str]]] = {}
    for line in proc.stdout.splitlines():
        if match := _ERROR.match(line):
            by_line = errors.setdefault(Path(match["file"]).name, {})
            by_line.setdefault(int(match["line"]), set()).add(match["code"])
    return proc.returncode, errors, proc.stdout + proc.stderr


@pytest.mark.slow
def test_mypy_accepts_typed_queries_and_rejects_mistyped_comparisons(tmp_path: Path) -> None:
    # tests/typing/mypy.ini, plus sqlglot skipped: the checked files never touch its types
    # (only the compiler does, and `mypy xray_lake` checks that), and skipping it saves seconds.
    config = tmp_path / "mypy.ini"
    config.write_text((TYPING / "mypy.ini").read_text()
                      + "\n[mypy-sqlglot.*]\nfollow_imports = skip\nignore_missing_imports = True\n")
    returncode, errors, output = _mypy(config, PASS, FAIL)
    assert returncode == 1, output
    # Errors inside xray_lake itself are `mypy xray_lake`'s business, not this test's.
    assert PASS.name not in errors, output
    expected = _expected_errors(FAIL)
    assert {"operator", "arg-type"} <= set().union(*expected.values())
    assert errors.get(FAIL.name) == expected, output
