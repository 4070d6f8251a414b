"""Helpers for users' own tests: capture what a pipeline records, in memory, with no lake."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from xray_lake.config import configure, get_settings
from xray_lake.records.schema import table_schema
from xray_lake.writer.process import current_writer, replace_sink
from xray_lake.writer.sinks import MemorySink


@dataclass
class CapturedRecords:
    """The runs, stages and candidates recorded inside `capture_records()`, as polars frames.

    Reading a table flushes first, so everything recorded so far is there.
    """

    _sink: MemorySink

    def _table(self, name: str) -> pl.DataFrame:
        writer = current_writer()
        if writer is not None:
            writer.flush(30)
        table = self._sink.table(name)
        if table is None:
            table = pa.Table.from_batches([], table_schema(name))
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    @property
    def runs(self) -> pl.DataFrame:
        return self._table("runs")

    @property
    def stages(self) -> pl.DataFrame:
        return self._table("stages")

    @property
    def candidates(self) -> pl.DataFrame:
        return self._table("candidates")

    def stage(self, name: str) -> dict[str, object]:
        """The one recorded execution of stage `name` (AssertionError if not exactly one)."""
        rows = self.stages.filter(pl.col("name") == name).to_dicts()
        assert len(rows) == 1, f"expected one execution of stage {name!r}, found {len(rows)}"
        return rows[0]


@contextmanager
def capture_records(*, strict: bool = True) -> Iterator[CapturedRecords]:
    """Record into memory instead of the lake for the duration of the block.

    ```python
    with capture_records() as records:
        MyPipeline("r1").run(query)
    assert records.stage("price-filter")["fail_ratio"] == 0.5
    ```
    `strict=True` makes instrumentation errors raise, so a misused decorator fails the test.
    """
    previous = get_settings()
    sink = MemorySink()
    configure(strict=strict)
    replace_sink(sink, timeout=previous.exit_timeout_s)
    try:
        yield CapturedRecords(sink)
    finally:
        replace_sink(None, timeout=previous.exit_timeout_s)
        configure(strict=previous.strict)


try:  # a ready fixture for pytest users: `from xray_lake.testing import xray_records`
    import pytest

    @pytest.fixture
    def xray_records() -> Iterator[CapturedRecords]:
        """pytest fixture: records of the test, captured in memory (strict mode)."""
        with capture_records() as records:
            yield records

except ImportError:  # pragma: no cover - pytest is optional at run time
    pass
