"""The builder's columns are typed: mypy accepts correct queries and rejects mistyped ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._mypy import TYPING, expected_errors, run_mypy

PASS, FAIL = TYPING / "pass_builder_types.py", TYPING / "fail_builder_types.py"


@pytest.mark.slow
def test_mypy_accepts_typed_queries_and_rejects_mistyped_comparisons(tmp_path: Path) -> None:
    # tests/typing/mypy.ini, plus sqlglot skipped: the checked files never touch its types
    # (only the compiler does, and `mypy xray_lake` checks that), and skipping it saves seconds.
    config = tmp_path / "mypy.ini"
    config.write_text((TYPING / "mypy.ini").read_text()
                      + "\n[mypy-sqlglot.*]\nfollow_imports = skip\nignore_missing_imports = True\n")
    returncode, errors, output = run_mypy(config, PASS, FAIL)
    assert returncode == 1, output
    # Errors inside xray_lake itself are `mypy xray_lake`'s business, not this test's.
    assert PASS.name not in errors, output
    expected = expected_errors(FAIL)
    assert {"operator", "arg-type"} <= set().union(*expected.values())
    assert errors.get(FAIL.name) == expected, output
