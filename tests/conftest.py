"""Shared fixtures: every test records into its own lake, in strict mode, and reads it back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

import xray_lake as xr
import xray_lake.config
from tests._captured import Captured
from tests.s3_server import s3  # noqa: F401  (session fixture: a local S3 server)
from xray_lake import _internal_errors
from xray_lake.writer import process

# Property tests check behaviour; a per-example deadline would only measure machine load.
settings.register_profile("xray", deadline=None)
settings.load_profile("xray")


def pytest_configure(config: pytest.Config) -> None:
    """Tests see no terminal size: a shell's COLUMNS, or the 80x24 pytest-xdist gives its
    workers, would change the width of every table the CLI prints."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


@pytest.fixture(autouse=True)
def isolated_lake(tmp_path: Path) -> Iterator[str]:
    """A fresh lake per test (its root is the value); strict mode, so internal errors fail loudly.

    Named so that no test module's own fixtures (`lake_root`, ...) shadow this autouse one.
    """
    root = str(tmp_path / "lake")
    _internal_errors.reset_for_tests()
    # The thread writer runs the same engine as the writer process, in this process, where a
    # test can reach it; the writer process itself is tested in test_writer_process.py and by
    # every test that starts a program with default settings.
    # Background compaction is off: a test's files stay as it wrote them unless the test turns
    # it on (test_background_compaction.py).
    xr.configure(root=root, spool_dir=str(tmp_path / "spool"), strict=True, fsync=False,
                 writer="thread", background_compaction=False)
    process.forget_carried()
    try:
        yield root
    finally:
        xr.flush(5)
        xray_lake.config.reset()
        _internal_errors.reset_for_tests()
        process.forget_carried()


@pytest.fixture
def lake(isolated_lake: str) -> Callable[[], xr.Lake]:
    """`lake()` flushes everything recorded so far (asserting it is durable) and opens the lake."""

    def open_lake() -> xr.Lake:
        assert xr.flush(5), f"flush failed: {xr.stats()}"
        return xr.Lake(isolated_lake)

    return open_lake


@pytest.fixture
def captured(isolated_lake: str) -> Iterator[Callable[[], Captured]]:
    """`lake` for tests of what the SDK records: the rows stay in memory (`capture_records`)
    and `captured().sql(...)` reads them as `lake().sql(...)` reads the files."""
    from xray_lake.testing import capture_records

    with capture_records() as records:
        yield lambda: Captured(records)


@pytest.fixture
def plugin_registry() -> Iterator[None]:
    """Metric plugins and stage types a test registers are forgotten after it; packaged
    plugins (entry points) are not loaded unless the test asks for them."""
    from xray_lake.records import plugin_registry as registry

    state = registry.snapshot()
    registry.restore((state[0], state[1], True))
    try:
        yield
    finally:
        registry.restore(state)
