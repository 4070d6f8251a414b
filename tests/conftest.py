"""Shared fixtures: every test records into its own lake, in strict mode, and reads it back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import xray_lake as xr
import xray_lake.config
from xray_lake import _guard


@pytest.fixture(autouse=True)
def isolated_lake(tmp_path: Path) -> Iterator[str]:
    """A fresh lake per test (its root is the value); strict mode, so internal errors fail loudly.

    Named so that no test module's own fixtures (`lake_root`, ...) shadow this autouse one.
    """
    root = str(tmp_path / "lake")
    _guard.reset_for_tests()
    xr.configure(root=root, spool_dir=str(tmp_path / "spool"), strict=True, fsync=False)
    try:
        yield root
    finally:
        xr.flush(5)
        xray_lake.config.reset()
        _guard.reset_for_tests()


@pytest.fixture
def lake(isolated_lake: str) -> Callable[[], xr.Lake]:
    """`lake()` flushes everything recorded so far (asserting it is durable) and opens the lake."""

    def open_lake() -> xr.Lake:
        assert xr.flush(5), f"flush failed: {xr.stats()}"
        return xr.Lake(isolated_lake)

    return open_lake
