"""Spool and replay: what the unwritable lake refused reaches it exactly once, and only that lake."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

import xray_lake as xr
from tests._faults import unwritable
from xray_lake.cli import replay as replay_cli
from xray_lake.storage import doctor, fs, tempfiles
from xray_lake.storage.fs import publish_table
from xray_lake.storage.spool import pending, replay_folder, spool_root

STAGES, CANDIDATES = 2, 6


def record(n: int, label: str, *, flush_each: bool = False) -> None:
    for i in range(n):
        with xr.run(label, run_id=f"{label}-{i}") as run:
            for s in range(STAGES):
                with run.stage(f"s{s}", type="filtering", passed="ok") as st:
                    items = [{"id": f"c{j}", "ok": j % 2 == 0} for j in range(CANDIDATES)]
                    st.input(items)
                    st.output(items)
        if flush_each:
            assert xr.flush(10)
    assert xr.flush(10)


def spool_while_unwritable(lake: Path, spool: Path, runs: int, label: str,
                           *, flush_each: bool = False) -> None:
    """Record `runs` runs into `lake` while it refuses writes; they must all go to the spool."""
    with unwritable(lake):
        xr.configure(root=str(lake), spool_dir=str(spool), fsync=False)
        before = xr.stats()  # counters run on across configure()
        record(runs, label, flush_each=flush_each)
        stats = xr.stats()
        assert stats["write_failures"] > before["write_failures"]
        assert stats["dropped_total"] == 0
        assert stats["spooled_rows"]["runs"] - before["spooled_rows"].get("runs", 0) == runs
        # close this writer: from here on only the replay under test moves spooled files
        xr.configure(root=str(lake.parent / "elsewhere"), spool_dir=str(spool), fsync=False)
    assert not list(lake.rglob("*.parquet"))


def spooled(tmp_path: Path, runs: int) -> tuple[Path, Path, str]:
    """`runs` runs of label p, flushed one by one, spooled because tmp_path/lake refused them:
    the lake, the spool, and the spool's folder for that lake."""
    lake, spool = tmp_path / "lake", tmp_path / "spool"
    spool_while_unwritable(lake, spool, runs, "p", flush_each=True)
    return lake, spool, spool_root(str(spool), str(lake))


def counts(root: Path) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) per table: equal when no row is doubled."""
    keys = {"runs": "run_id", "stages": "run_id, stage_id",
            "candidates": "run_id, stage_id, candidate_id"}
    con = duckdb.connect()
    found = {}
    for table, key in keys.items():
        if not list(root.glob(f"{table}/*/*/*.parquet")):
            found[table] = (0, 0)
            continue
        rows = con.sql(f"select count(*), count(distinct ({key})) from "
                       f"read_parquet('{root}/{table}/*/*/*.parquet')").fetchall()
        found[table] = (int(rows[0][0]), int(rows[0][1]))
    return found


def expected(runs: int) -> dict[str, tuple[int, int]]:
    return {"runs": (runs, runs), "stages": (runs * STAGES,) * 2,
            "candidates": (runs * STAGES * CANDIDATES,) * 2}


def cli() -> typer.Typer:
    app = typer.Typer()
    replay_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep `replay` a subcommand
    return app


def test_unwritable_lake_spools_and_replay_folder_lands_everything_once(
    tmp_path: Path,
) -> None:
    lake, spool = tmp_path / "lake", tmp_path / "spool"
    spool_while_unwritable(lake, spool, 5, "p")
    folder = spool_root(str(spool), str(lake))
    assert len(pending(folder)) == 3
    result = replay_folder(folder, str(lake), fsync=True)
    assert (result.files, result.rows, result.failed) == (3, 5 + 5 * STAGES * (1 + CANDIDATES), 0)
    assert counts(lake) == expected(5)
    assert pending(folder) == []
    again = replay_folder(folder, str(lake))
    assert (again.files, again.rows) == (0, 0)
    assert counts(lake) == expected(5)


def test_replay_cli_lands_everything_once_and_reports_what_it_moved(tmp_path: Path) -> None:
    lake, spool = tmp_path / "lake", tmp_path / "spool"
    spool_while_unwritable(lake, spool, 4, "p", flush_each=True)
    runner = CliRunner()
    result = runner.invoke(cli(), ["replay", "--spool", str(spool)])
    assert result.exit_code == 0, result.output
    assert f"{lake}: replayed 12 files, {4 + 4 * STAGES * (1 + CANDIDATES)} rows" in result.output
    assert counts(lake) == expected(4)
    again = runner.invoke(cli(), ["replay", "--spool", str(spool)])
    assert again.exit_code == 0 and "nothing to replay" in again.output
    assert counts(lake) == expected(4)


def test_replay_cli_exits_1_and_keeps_the_spool_while_the_lake_is_unwritable(
    tmp_path: Path,
) -> None:
    lake, spool = tmp_path / "lake", tmp_path / "spool"
    spool_while_unwritable(lake, spool, 2, "p")
    with unwritable(lake):
        result = CliRunner().invoke(cli(), ["replay", "--spool", str(spool)])
    assert result.exit_code == 1, result.output
    assert "3 files left" in result.output
    assert len(pending(spool_root(str(spool), str(lake)))) == 3
    assert CliRunner().invoke(cli(), ["replay", "--spool", str(spool)]).exit_code == 0
    assert counts(lake) == expected(2)


def replayer(spool: str, lake: str, go: Event) -> None:
    """A replay process: waits for `go`, replays, exits 1 if some file could not be moved."""
    go.wait(60)
    result = replay_folder(spool_root(spool, lake), lake, fsync=True)
    sys.exit(1 if result.failed else 0)


def stalling_replayer(spool: str, lake: str, go: Event) -> None:
    """A replayer that stops itself (SIGSTOP) once a copy into the lake is whole, just before
    its fsync and rename: a slow fsync, made certain."""
    real = fs.fsync_file

    def stall_then_fsync(path: str) -> None:
        if path.endswith(".tmp"):
            os.kill(os.getpid(), signal.SIGSTOP)
        real(path)

    fs.fsync_file = stall_then_fsync  # type: ignore[assignment]
    replayer(spool, lake, go)


def stopped(process: BaseProcess) -> bool:
    with open(f"/proc/{process.pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def forkserver() -> ForkServerContext:
    """Processes forked from a fresh interpreter that imported xray_lake once: cheap to start."""
    server = multiprocessing.get_context("forkserver")
    server.set_forkserver_preload(["xray_lake"])
    return server


@pytest.fixture
def start_replayer() -> Iterator[Callable[..., BaseProcess]]:
    """Starts replayer processes; SIGKILLs (even stopped ones) and reaps what is left at the end."""
    started: list[BaseProcess] = []

    def start(spool: Path, lake: Path, go: Event,
              target: Callable[[str, str, Event], None] = replayer) -> BaseProcess:
        process = forkserver().Process(target=target, args=(str(spool), str(lake), go))
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.exitcode is None:
            process.kill()
        process.join(10)


@pytest.mark.slow
def test_replay_killed_halfway_and_run_again_neither_loses_nor_doubles_a_row(
    tmp_path: Path, start_replayer: Callable[[Path, Path, Event], BaseProcess]
) -> None:
    runs = 40
    lake, spool, folder = spooled(tmp_path, runs)
    total = len(pending(folder))
    assert total == 3 * runs
    rng = random.Random()
    go = forkserver().Event()
    go.set()
    moved_before_kill = []
    for _round in range(2):
        left = len(pending(folder))
        stop_after = rng.randint(3, 30)
        victim = start_replayer(spool, lake, go)
        wait_until(lambda left=left, stop_after=stop_after:
                   left - len(pending(folder)) >= stop_after, "files are moved")
        time.sleep(rng.uniform(0, 0.01))
        victim.kill()
        victim.join(10)
        assert victim.exitcode == -signal.SIGKILL
        moved_before_kill.append(total - len(pending(folder)))
        assert 0 < moved_before_kill[-1] < total, "the kill did not land halfway"
        assert all(pq.ParquetFile(p).metadata for p in lake.rglob("*.parquet"))
    result = CliRunner().invoke(cli(), ["replay", "--spool", str(spool)])
    assert result.exit_code == 0, result.output
    assert pending(folder) == []
    assert counts(lake) == expected(runs)
    assert doctor.scan(str(lake), fix=True).ok  # a temp file of the killed replayer, if any
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")]
    print(f"\nreplay killed halfway: {total} spooled files; moved before each kill: "
          f"{moved_before_kill}; after rerun {counts(lake)} (rows, distinct keys)")


@pytest.mark.slow
def test_replays_at_once_never_double_or_break_a_file_even_when_one_is_killed(
    tmp_path: Path, start_replayer: Callable[[Path, Path, Event], BaseProcess]
) -> None:
    runs = 30
    lake, spool, folder = spooled(tmp_path, runs)
    go = forkserver().Event()
    replayers = [start_replayer(spool, lake, go) for _ in range(3)]
    go.set()  # they start together
    moved = random.randint(1, 20)
    wait_until(lambda: 3 * runs - len(pending(folder)) >= moved, "files are moved")
    victim, survivors = replayers[0], replayers[1:]
    victim.kill()
    for process in replayers:
        process.join(60)
    assert victim.exitcode == -signal.SIGKILL
    assert [p.exitcode for p in survivors] == [0, 0]  # finished, no file failed
    for path in lake.rglob("*.parquet"):
        pq.read_table(path)  # no file published half-written
    assert pending(folder) == []
    assert counts(lake) == expected(runs)
    assert doctor.scan(str(lake), fix=True).ok


def big_spooled_file(spool: Path, lake: Path, megabytes: int) -> tuple[Path, bytes]:
    """One spooled file of incompressible bytes, published the way the writer spools."""
    table = pa.table({"run_id": [f"r{i}" for i in range(megabytes)],
                      "payload": [os.urandom(1 << 20) for _ in range(megabytes)]})
    folder = spool_root(str(spool), str(lake))
    path = Path(publish_table(folder, "runs", "p", "2024-01-01", table, "h-1-deadbeef", 1,
                              compression_level=1, fsync=False)[0])
    return path, path.read_bytes()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.0002)


@pytest.mark.slow
def test_a_stalled_replayer_never_publishes_a_file_another_replayer_is_rewriting(
    tmp_path: Path, start_replayer: Callable[..., BaseProcess]
) -> None:
    """Replayer A is stopped with its copy complete, just before the rename; replayer B starts
    copying the same file; A resumes and renames; B is killed. The lake file must be whole."""
    lake, spool = tmp_path / "lake", tmp_path / "spool"
    source, original = big_spooled_file(spool, lake, 24)
    target = lake / source.relative_to(spool_root(str(spool), str(lake)))
    folder = target.parent

    def temps() -> dict[str, int]:
        sizes = {}
        for p in folder.glob(".*.tmp") if folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                sizes[p.name] = p.stat().st_size
        return sizes

    server = forkserver()
    go_a, go_b = server.Event(), server.Event()
    a = start_replayer(spool, lake, go_a, stalling_replayer)
    b = start_replayer(spool, lake, go_b)
    go_a.set()
    wait_until(lambda: stopped(a), "A stalls between its copy and its rename")
    try:
        assert len(original) in temps().values(), "A's copy is whole"
        assert not target.exists()
        a_temps = temps()
        go_b.set()

        def b_started() -> bool:  # its own temp, or A's shared one cut short, or all done
            now = temps()
            return (bool(now.keys() - a_temps.keys())
                    or any(now.get(name, 0) < size for name, size in a_temps.items())
                    or b.exitcode is not None)

        wait_until(b_started, "B copies")
        b_finished = b.exitcode is not None
        if not b_finished:
            os.kill(b.pid, signal.SIGSTOP)  # B stalls mid-copy
    finally:
        os.kill(a.pid, signal.SIGCONT)
    a.join(60)
    assert a.exitcode == 0
    assert target.read_bytes() == original  # what A published is whole, whatever B does
    b.kill()
    b.join(60)
    assert target.read_bytes() == original
    assert not source.exists()
    assert len(tempfiles.clean_stale_temps(str(lake))) == (0 if b_finished else 1)
    assert [p.name for p in folder.iterdir()] == [target.name]


def test_a_spool_never_lands_in_another_lake(tmp_path: Path) -> None:
    lake_a, lake_b, lake_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    spool = tmp_path / "spool"
    spool_while_unwritable(lake_a, spool, 3, "from-a")
    spool_while_unwritable(lake_b, spool, 2, "from-b")

    # a writer of lake C that works drains C's spool (empty), never A's or B's
    xr.configure(root=str(lake_c), spool_dir=str(spool), fsync=False)
    record(1, "from-c")
    assert counts(lake_c)["runs"] == (1, 1)
    assert xr.stats()["replayed_files"] == 0

    runner = CliRunner()
    unknown = runner.invoke(cli(), ["replay", "--spool", str(spool), "--root", str(lake_c)])
    assert unknown.exit_code == 1
    assert isinstance(unknown.exception, xr.XrayLakeError)
    assert "matches none of the 2 lakes" in str(unknown.exception)

    only_b = runner.invoke(cli(), ["replay", "--spool", str(spool), "--root", str(lake_b)])
    assert only_b.exit_code == 0, only_b.output
    assert counts(lake_b) == expected(2)
    assert not lake_a.exists() or not list(lake_a.rglob("*.parquet"))

    # $XRAY_LAKE_ROOT is not --root: it never redirects A's spool into C
    rest = runner.invoke(cli(), ["replay", "--spool", str(spool)],
                         env={"XRAY_LAKE_ROOT": str(lake_c)})
    assert rest.exit_code == 0, rest.output
    assert counts(lake_a) == expected(3)
    assert counts(lake_c)["runs"] == (1, 1)
    labels = duckdb.connect().sql(
        f"select distinct label from read_parquet('{tmp_path}/*/runs/*/*/*.parquet', "
        "hive_partitioning = true, filename = true) order by 1").fetchall()
    assert labels == [("from-a",), ("from-b",), ("from-c",)]
    for lake, label in ((lake_a, "from-a"), (lake_b, "from-b"), (lake_c, "from-c")):
        assert {p.name for p in (lake / "runs").iterdir()} == {f"label={label}"}


def test_replay_root_override_moves_a_single_spooled_lake(tmp_path: Path) -> None:
    lake, moved, spool = tmp_path / "lake", tmp_path / "moved", tmp_path / "spool"
    spool_while_unwritable(lake, spool, 2, "p")
    result = CliRunner().invoke(cli(), ["replay", "--spool", str(spool), "--root", str(moved)])
    assert result.exit_code == 0, result.output
    assert counts(moved) == expected(2)
    assert not list(lake.rglob("*.parquet"))


@pytest.mark.parametrize("setting", ["option", "env"])
def test_replay_cli_with_an_empty_spool_says_so(tmp_path: Path, setting: str) -> None:
    spool = tmp_path / "never-written"
    args = ["replay", "--spool", str(spool)] if setting == "option" else ["replay"]
    result = CliRunner().invoke(cli(), args, env={"XRAY_LAKE_SPOOL": str(spool)})
    assert result.exit_code == 0
    assert "nothing to replay" in result.output


def test_a_corrupt_spooled_file_is_quarantined_and_the_rest_still_replays(
    tmp_path: Path,
) -> None:
    lake_root = tmp_path / "lake"
    folder = spool_root(str(tmp_path / "spool"), str(lake_root))
    good = pa.table({"run_id": ["r1"]})
    part = Path(folder) / "runs" / "label=x" / "date=2026-01-01"
    part.mkdir(parents=True)
    (part / "part-v1-a-00000001.parquet").write_bytes(b"not parquet at all")
    pq.write_table(good, part / "part-v1-a-00000002.parquet")
    result = replay_folder(folder, str(lake_root), fsync=False)
    assert (result.files, result.quarantined, result.failed) == (1, 1, 0)
    assert (Path(folder) / "_quarantine" / "runs" / "label=x" / "date=2026-01-01"
            / "part-v1-a-00000001.parquet").exists()
    assert (lake_root / "runs" / "label=x" / "date=2026-01-01"
            / "part-v1-a-00000002.parquet").exists()
