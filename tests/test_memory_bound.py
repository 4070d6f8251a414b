"""The memory bound: how max_buffer_bytes is split, that records never hold more than their
share, and that a burst is dropped and counted instead of growing memory or blocking."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pytest

import xray_lake as xr
from xray_lake.config import MIB, Settings
from xray_lake.writer import process
from xray_lake.writer.engine import Writer
from xray_lake.writer.intake import Intake
from xray_lake.writer.memory import MemoryPlan

N = 2000  # candidates per stage call: a ~200 KB blob


@xr.filtering_stage("burst", id="id")
def keep_cheap(items: Annotated[list[dict[str, Any]], xr.Candidates()]) -> list[dict[str, Any]]:
    return [x for x in items if x["price"] < 50]


def products(n: int = N) -> list[dict[str, Any]]:
    return [{"id": f"p-{i}", "title": f"running shoe model {i} in mesh", "price": i % 100,
             "tags": ["sale", "new"]} for i in range(n)]


Stats = dict[str, Any]


def burst(bound: int, **settings: Any) -> tuple[Stats, Stats, int, bool]:
    """About ten times `bound` of candidate JSON recorded back to back, once the writer runs:
    the stats before and after, how many stage calls that was, and what the flush after said."""
    xr.configure(max_buffer_bytes=bound, drain_interval_s=0.05, **settings)
    items = products()
    keep_cheap(items)  # starts the writer
    assert xr.flush(30)
    before = xr.stats()
    calls = 10 * bound // 200_000 + 1  # ~10x the bound of candidate JSON, back to back
    for _ in range(calls):
        assert keep_cheap(items) == [x for x in items if x["price"] < 50]  # never changed
    flushed = xr.flush(60)
    return before, xr.stats(), calls, flushed


def recorded(before: Stats, after: Stats) -> int:
    """Records (runs, stages, candidates) recorded between the two stats."""
    return sum(after[k] - before[k]
               for k in ("runs_recorded", "stages_recorded", "candidates_recorded"))


def written(before: Stats, after: Stats) -> int:
    """Candidate rows written between the two stats."""
    return int(after["rows_written"]["candidates"] - before["rows_written"]["candidates"])


@pytest.fixture
def violations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Checks, after every admission and every encoded record, that queued + buffered bytes
    stay within the records' share of the bound (assertions in the writer thread would be
    swallowed by it, so violations are collected for the test to assert on)."""
    found: list[str] = []

    def check(intake: Intake, where: str) -> None:
        with intake.lock:
            held = intake.queued_bytes + intake.buffered_bytes
        plan = intake.memory
        if held > plan.hold or plan.hold + plan.reserved != plan.bound:
            found.append(f"{where}: held {held} > {plan.hold} (bound {plan.bound})")

    submit, account = Writer.submit, Intake.account

    def checked_submit(self: Writer, event: Any) -> None:
        submit(self, event)
        check(self._intake, "submit")

    def checked_account(self: Intake, added: int, event: object, n: int) -> bool:
        ok = account(self, added, event, n)
        check(self, "account")
        return ok

    monkeypatch.setattr(Writer, "submit", checked_submit)
    monkeypatch.setattr(Intake, "account", checked_account)
    yield found


@pytest.mark.parametrize("bound", [MIB // 4, 3 * MIB, 64 * MIB, 256 * MIB, 4096 * MIB])
@pytest.mark.parametrize("flush_bytes", [1, 64 * 1024, 64 * MIB])
def test_the_bound_splits_into_records_share_and_reserved_working_set(
    bound: int, flush_bytes: int
) -> None:
    plan = MemoryPlan.of(Settings(max_buffer_bytes=bound, flush_bytes=flush_bytes))
    assert plan.bound == bound
    assert plan.hold + plan.reserved == bound
    assert 0 < plan.hold < bound and plan.reserved >= bound // 2
    assert 1 <= plan.flush_at <= min(flush_bytes, plan.hold)
    assert 1 <= plan.wake_at <= plan.flush_at
    assert 1 <= plan.release_every <= plan.reserved


def test_stats_report_the_records_share() -> None:
    xr.configure(max_buffer_bytes=64 * MIB)
    stats = xr.stats()
    assert stats["buffer_limit_bytes"] == MemoryPlan.of(Settings(max_buffer_bytes=64 * MIB)).hold
    assert stats["peak_buffered_bytes"] == 0


@pytest.mark.slow
def test_by_default_a_burst_of_ten_times_the_bound_waits_for_room_and_loses_nothing(
    violations: list[str],
) -> None:
    bound = 2 * MIB
    before, after, calls, flushed = burst(bound)
    assert flushed

    assert violations == []
    assert after["dropped_total"] == 0
    assert 0 < after["peak_buffered_bytes"] <= after["buffer_limit_bytes"] < bound
    assert after["blocked_calls"] > before["blocked_calls"]  # the producer did wait
    assert recorded(before, after) == calls * (2 + N)
    assert written(before, after) == calls * N


def test_under_the_drop_policy_a_burst_of_ten_times_the_bound_is_dropped_and_counted(
    violations: list[str],
) -> None:
    bound = 2 * MIB
    before, after, calls, _ = burst(bound, on_full="drop")  # flush: False, records were dropped

    assert violations == []
    assert 0 < after["peak_buffered_bytes"] <= after["buffer_limit_bytes"] < bound
    assert after["dropped"].get("buffer_full", 0) > 0
    assert after["buffered_bytes"] == 0 and after["buffered_records"] == 0
    # every record offered is recorded or dropped, exactly once: per call one run, one stage
    # and N candidates (a survivors-only filter records each input)
    dropped = after["dropped_total"] - before["dropped_total"]
    assert recorded(before, after) + dropped == calls * (2 + N)
    assert recorded(before, after) > 0
    assert written(before, after) == after["candidates_recorded"] - before["candidates_recorded"]


@pytest.mark.parametrize(("policy", "reason"), [("drop", "buffer_full"),
                                               ("block", "block_timeout")])
def test_with_lake_and_spool_down_records_stay_within_the_share_and_flush_answers(
    tmp_path: Path, violations: list[str], policy: str, reason: str,
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    bound = 2 * MIB
    xr.configure(root=str(blocker / "lake"), spool_dir=str(blocker / "spool"),
                 max_buffer_bytes=bound, drain_interval_s=0.05, on_full=policy,
                 max_block_s=0.05)
    items = products()
    for _ in range(30):
        keep_cheap(items)
    assert xr.flush(30) is False
    writer = process.current_writer()
    assert writer is not None
    # the flush was answered (not timed out): nothing is left in the queue, even though the
    # buffers are past the write threshold and every write fails
    assert not writer._intake.queue
    stats = xr.stats()
    assert violations == []
    assert stats["dropped"].get(reason, 0) > 0
    assert writer.memory.flush_at <= stats["buffered_bytes"] <= stats["buffer_limit_bytes"]


@dataclass
class Product:
    id: str
    price: float


def test_the_writer_keeps_no_reference_to_the_callers_candidates() -> None:
    """Queued records reference the caller's objects; once written, nothing in the SDK does."""
    items = [Product(f"p-{i}", float(i)) for i in range(200)]
    refs = [weakref.ref(x) for x in items]
    keep_cheap_products(items)
    assert xr.flush(10)
    del items
    gc.collect()
    assert [r for r in refs if r() is not None] == []


@xr.filtering_stage("burst-products", id="id")
def keep_cheap_products(items: Annotated[list[Product], xr.Candidates()]) -> list[Product]:
    return [x for x in items if x.price < 50]


def test_freed_arrow_memory_is_returned_after_each_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    releases: list[int] = []

    class Pool:
        def release_unused(self) -> None:
            releases.append(1)

    monkeypatch.setattr(pa, "default_memory_pool", Pool)
    keep_cheap(products(100))
    assert xr.flush(10)
    assert releases


def test_a_failing_release_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Pool:
        def release_unused(self) -> None:
            raise RuntimeError("no such thing")

    monkeypatch.setattr(pa, "default_memory_pool", Pool)
    keep_cheap(products(100))
    assert xr.flush(10)
    assert xr.stats()["candidates_recorded"] == 100
