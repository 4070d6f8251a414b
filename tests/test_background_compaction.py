"""Background compaction: the writer's own thread merges sealed partitions, safely for readers."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import xray_lake as xr
import xray_lake.config
from tests.test_compact import OLD, Published, Readers, count, counts, data_files, leftovers
from xray_lake.config import get_settings
from xray_lake.sdk import recording
from xray_lake.storage.compaction.background import SMALL_MIN_FILES, BackgroundCompactor

TODAY = "2024-01-05"
MANY = 8  # small files that make today's runs partition worth merging in these tests
NOON_TODAY = dt.datetime.fromisoformat(f"{TODAY}T12:00:00+00:00").timestamp()


def background(root: str, interval_s: float = 0.05,
               small_min_files: int = SMALL_MIN_FILES) -> BackgroundCompactor:
    """A compactor whose clock says it is noon of TODAY (so OLD dates are sealed)."""
    return BackgroundCompactor(root, get_settings(), interval_s=interval_s,
                               small_min_files=small_min_files, clock=lambda: NOON_TODAY)


def files_per_partition(root: str, table: str) -> dict[str, int]:
    found = Counter(p.parent.relative_to(root).as_posix() for p in data_files(root, table))
    return dict(found)


def test_a_tick_merges_sealed_partitions_and_only_the_small_tables_of_today(
        isolated_lake: str) -> None:
    published = Published(isolated_lake)
    published.fill(labels=("a",), dates=OLD, files=4)
    for table in ("runs", "candidates"):
        published.add(table, "a", TODAY, files=MANY)  # many: runs are merged
        published.add(table, "b", TODAY, files=3)  # few: left for later ticks
    expected = counts(xr.Lake(isolated_lake))

    compactor = background(isolated_lake, small_min_files=MANY)
    compactor.tick()

    assert files_per_partition(isolated_lake, "runs") == {
        **{f"runs/label=a/date={d}": 1 for d in OLD},
        f"runs/label=a/date={TODAY}": 1, f"runs/label=b/date={TODAY}": 3}
    assert files_per_partition(isolated_lake, "candidates") == {
        **{f"candidates/label=a/date={d}": 1 for d in OLD},
        f"candidates/label=a/date={TODAY}": MANY,
        f"candidates/label=b/date={TODAY}": 3}
    assert counts(xr.Lake(isolated_lake)) == expected
    stats = compactor.stats()
    assert (stats["ticks"], stats["merges"], stats["errors"], stats["failures"]) == (1, 5, 0, 0)
    assert stats["files_in"] == 4 * 4 + MANY
    assert leftovers(isolated_lake) == []


def test_a_tick_stops_when_its_budget_is_spent_and_the_next_one_goes_on(
        isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a", "b"), dates=OLD, files=3)
    compactor = BackgroundCompactor(isolated_lake, get_settings(), interval_s=1, budget_s=0.0,
                                    clock=lambda: NOON_TODAY)
    compactor.tick()
    assert compactor.stats()["merges"] == 0  # a zero budget starts no merge at all
    compactor.budget_s = 60
    compactor.tick()
    assert compactor.stats()["merges"] == 8


def test_a_tick_never_raises_and_counts_its_failure(tmp_path: Path) -> None:
    root = tmp_path / "not-a-folder"
    root.write_text("a file where the lake should be")
    compactor = background(str(root))
    compactor.tick()
    assert compactor.stats()["failures"] == 1


@pytest.mark.slow
def test_readers_never_see_a_row_twice_while_background_compaction_runs(
        isolated_lake: str) -> None:
    published = Published(isolated_lake)
    published.fill(files=10)
    stop = threading.Event()
    readers = Readers(published, stop)

    def publisher() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            for table in ("runs", "candidates"):
                published.add(table, rng.choice("ab"), rng.choice(OLD), files=3)
            stop.wait(0.2)

    compactor = background(isolated_lake, interval_s=0.02)
    threads = [threading.Thread(target=publisher), *readers.threads()]
    compactor.start()
    for thread in threads:
        thread.start()
    # Enough interleavings to matter, however loaded the machine (the compactor's thread runs
    # at the lowest priority): 10 merges and 20 queries of each reader kind, bounded in time.
    deadline = time.monotonic() + 120
    queries = readers.queries
    while time.monotonic() < deadline and not readers.problems and (
            compactor.stats()["merges"] < 10 or min(queries["fresh"], queries["long-lived"]) < 20):
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(30)
    compactor.stop(timeout=30)
    assert not compactor.running
    assert readers.problems == []
    stats = compactor.stats()
    assert stats["merges"] >= 10 and stats["failures"] == 0 and stats["errors"] == 0, stats
    assert counts(xr.Lake(isolated_lake)) == (published.done["candidates"],) * 2 + (
        published.done["runs"],) * 2


# A process whose background compactor kills it (SIGKILL) right after a merge step.
KILLED = textwrap.dedent("""
    import os, signal, sys, time
    import xray_lake as xr
    from xray_lake.config import get_settings
    from xray_lake.storage.compaction import plan
    from xray_lake.storage.compaction.background import BackgroundCompactor

    root, step, now = sys.argv[1], sys.argv[2], float(sys.argv[3])
    plan.step_hook = lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == step else None
    xr.configure(root=root, fsync=False)
    BackgroundCompactor(root, get_settings(), interval_s=0.01, clock=lambda: now).start()
    time.sleep(60)
    sys.exit("the compactor never reached its step")
""")


@pytest.mark.slow
@pytest.mark.parametrize("step", ["visible", "source_deleted"])
def test_a_background_compaction_killed_mid_merge_leaves_a_state_that_recovers(
        isolated_lake: str, step: str) -> None:
    published = Published(isolated_lake)
    published.fill(labels=("a",), dates=OLD[:1], files=4)
    expected = (published.done["candidates"],) * 2 + (published.done["runs"],) * 2

    killed = subprocess.run([sys.executable, "-c", KILLED, isolated_lake, step, str(NOON_TODAY)],
                            capture_output=True, text=True, timeout=120)

    assert killed.returncode == -9, killed.stderr
    assert counts(xr.Lake(isolated_lake)) == expected  # the markers keep readers exact
    compactor = background(isolated_lake)
    compactor.tick()
    stats = compactor.stats()
    assert (stats["rolled_back"], stats["rolled_forward"]) == (
        (1, 0) if step == "visible" else (0, 1))
    assert counts(xr.Lake(isolated_lake)) == expected
    assert all(n == 1 for t in ("runs", "candidates")
               for n in files_per_partition(isolated_lake, t).values())
    assert leftovers(isolated_lake) == []


def record_past_runs(flushes: int) -> None:
    """One run per flush, dated 2024-01-02: each flush leaves one more file per table."""
    clock, recording._clock = recording._clock, lambda: NOON_TODAY - 3 * 86_400
    try:
        for i in range(flushes):
            with xr.run("bg", run_id=f"r{i}") as run, run.stage("f", type="filtering",
                                                                 passed="ok") as st:
                items = [{"id": f"c{j}", "ok": j % 2 == 0} for j in range(4)]
                st.input(items)
                st.output(items)
            assert xr.flush(30), xr.stats()
    finally:
        recording._clock = clock


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["thread", "process"])
def test_the_writer_compacts_sealed_partitions_in_the_background(isolated_lake: str,
                                                                 writer: str) -> None:
    xr.configure(background_compaction=True, compaction_interval_s=0.1, writer=writer)
    record_past_runs(3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
            n > 1 for t in ("runs", "stages", "candidates")
            for n in files_per_partition(isolated_lake, t).values()):
        time.sleep(0.1)
    assert all(n == 1 for t in ("runs", "stages", "candidates")
               for n in files_per_partition(isolated_lake, t).values())
    assert count(xr.Lake(isolated_lake), "runs") == (3, 3)
    assert xr.flush(10)
    assert xr.stats()["compaction"]["merges"] >= 3


def test_background_compaction_off_leaves_the_files_alone(isolated_lake: str) -> None:
    xr.configure(background_compaction=False, compaction_interval_s=0.05)
    record_past_runs(3)
    time.sleep(0.5)  # ten intervals: time enough for a tick, had one been started
    assert set(files_per_partition(isolated_lake, "runs").values()) == {3}
    assert xr.stats()["compaction"] == {}
    assert not [t for t in threading.enumerate() if t.name == "xray-lake-compactor"
                and t.is_alive()]


def test_the_environment_variable_turns_background_compaction_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAY_LAKE_BACKGROUND_COMPACTION", "0")
    assert xray_lake.config.reset().background_compaction is False
    monkeypatch.setenv("XRAY_LAKE_BACKGROUND_COMPACTION", "1")
    assert xray_lake.config.reset().background_compaction is True
    monkeypatch.delenv("XRAY_LAKE_BACKGROUND_COMPACTION")
    assert xray_lake.config.reset().background_compaction is True  # on by default
