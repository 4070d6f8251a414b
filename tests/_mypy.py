"""mypy run over the type-checker-only files in tests/typing/, and their `# expect:` comments."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

TYPING = Path(__file__).parent / "typing"
REPO = Path(__file__).parent.parent
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def expected_errors(path: Path) -> dict[int, set[str]]:
    """Line -> error codes, from `# expect: code[, code]` comments."""
    found: dict[int, set[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if "# expect: " in line:
            found[number] = {c.strip() for c in line.rsplit("# expect: ", 1)[1].split(",")}
    return found


def run_mypy(config: Path, *files: Path) -> tuple[int, dict[str, dict[int, set[str]]], str]:
    """Run mypy once over `files` (its start-up dominates); its exit code, errors by file name
    and line, and its whole output."""
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
