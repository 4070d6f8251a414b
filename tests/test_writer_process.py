"""The writer process (writer="process", the default), with its faults made to happen for real.

Each test runs an application in a subprocess with default writer settings, so its records
cross a real pipe to a real writer process: SIGKILL of either side, a fork, a hung lake, a
lake and spool that refuse everything, records the writer process must not unpickle, and a
writer process that cannot start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests._faults import HANG_FIRST_WRITE

pytestmark = pytest.mark.slow  # each test starts an application and its writer process

PRELUDE = HANG_FIRST_WRITE + textwrap.dedent("""
    import json, os, sys, time
    import xray_lake as xr
    from xray_lake.writer import process

    root, spool = sys.argv[1], sys.argv[2]
    xr.configure(root=root, spool_dir=spool, fsync=False, **json.loads(sys.argv[3]))

    def record(label, ids, n=20):
        for i in ids:
            with xr.run(label, run_id=f"{label}-{i}") as run:
                with run.stage("s", type="filtering", passed="ok") as st:
                    items = [{"id": f"c{j}", "ok": j % 3 != 0} for j in range(n)]
                    st.input(items)
                    st.output(items)

    def say(*words):
        print(*words, flush=True)

    def hand_over():
        # wait until the writer process has every record in its pipe; say its pid
        writer = process.get_writer()
        while not writer.handed_over() or writer.pid is None:
            time.sleep(0.01)
        say("HANDED", writer.pid)
        return writer
""")


def app(tmp_path: Path, body: str, settings: dict[str, Any] | None = None,
        **popen: Any) -> subprocess.Popen[str]:
    code = PRELUDE + textwrap.dedent(body)
    env = {k: v for k, v in os.environ.items() if k != "XRAY_LAKE_WRITER"}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "lake"), str(tmp_path / "spool"),
         json.dumps(settings or {})], stdout=subprocess.PIPE, text=True, env=env, **popen)


def run_app(tmp_path: Path, body: str, settings: dict[str, Any] | None = None,
            timeout: float = 120) -> list[str]:
    proc = app(tmp_path, body, settings)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out.split()


def after(words: list[str], key: str) -> str:
    return words[words.index(key) + 1]


def counts(root: Path, label: str | None = None) -> dict[str, int]:
    """Rows per table, and distinct run ids, in the lake (optionally of one label)."""
    con = duckdb.connect()
    out: dict[str, int] = {}
    where = f"where run_id like '{label}-%'" if label else ""
    for table in ("runs", "stages", "candidates"):
        files = list((root / table).rglob("*.parquet"))
        if not files:
            out[table] = 0
            continue
        glob = f"{root}/{table}/**/*.parquet"
        row = con.execute(f"select count(*), count(distinct run_id) from "
                          f"read_parquet('{glob}', union_by_name=true) {where}").fetchone()
        assert row is not None
        out[table] = row[0]
        if table == "runs":
            out["distinct_runs"] = row[1]
    return out


def wait_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone too (its parent reaps it)
            if fh.read().split(")")[-1].split()[0] == "Z":
                return
        time.sleep(0.05)
    raise AssertionError(f"writer process {pid} still running after {timeout}s")


def whole(n_runs: int, n: int = 20) -> dict[str, int]:
    return {"runs": n_runs, "stages": n_runs, "candidates": n_runs * n, "distinct_runs": n_runs}


def test_records_land_through_a_writer_process_and_the_app_never_loads_pyarrow(
    tmp_path: Path,
) -> None:
    words = run_app(tmp_path, """
        record("p", range(50))
        say("FLUSH", xr.flush(60))
        writer = process.current_writer()
        say("PID", writer.pid, os.getpid())
        say("PYARROW", "pyarrow" in sys.modules)
        say("BUFFERED", xr.stats()["buffered_records"])
    """)
    assert after(words, "FLUSH") == "True"
    assert words[words.index("PID") + 1] != words[words.index("PID") + 2]
    assert after(words, "PYARROW") == "False"
    assert after(words, "BUFFERED") == "0"
    assert counts(tmp_path / "lake") == whole(50)


def test_sigkill_of_the_application_loses_nothing_the_writer_process_had_received(
    tmp_path: Path,
) -> None:
    # nothing is written before the kill: the records are only in the writer process
    proc = app(tmp_path, """
        record("k", range(200))
        hand_over()
        time.sleep(600)
    """, {"flush_interval_s": 3600})
    assert proc.stdout is not None
    words = proc.stdout.readline().split()
    writer_pid = int(after(words, "HANDED"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_gone(writer_pid)
    assert counts(tmp_path / "lake") == whole(200)


def test_a_killed_writer_process_is_restarted_and_given_all_it_had_not_written(
    tmp_path: Path,
) -> None:
    proc = app(tmp_path, """
        record("w", range(100))
        writer = hand_over()
        sys.stdin.readline()  # the test kills the writer process meanwhile
        record("w", range(100, 200))
        say("FLUSH", xr.flush(60))
        stats = xr.stats()
        say("RESTARTS", stats["writer_restarts"], "PID", writer.pid)
    """, {"flush_interval_s": 3600}, stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    first = int(after(proc.stdout.readline().split(), "HANDED"))
    os.kill(first, signal.SIGKILL)
    wait_gone(first)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=120)
    words = out.split()
    assert after(words, "FLUSH") == "True"
    assert after(words, "RESTARTS") == "1"
    assert int(after(words, "PID")) != first
    # the killed one had written nothing (flush_interval_s): no batch can land twice
    assert counts(tmp_path / "lake") == whole(200)


def test_a_forked_child_gets_its_own_writer_process_and_never_holds_the_parents_open(
    tmp_path: Path,
) -> None:
    words = run_app(tmp_path, """
        record("parent", range(10))
        parent_writer = process.get_writer()
        while not parent_writer.handed_over():
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            record("child", range(10))
            ok = xr.flush(60)
            print("CHILD", ok, process.get_writer().pid, flush=True)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        record("parent", range(10, 20))
        say("FLUSH", xr.flush(60), "STATUS", status, "PARENT", parent_writer.pid)
    """)
    assert after(words, "FLUSH") == "True"
    assert after(words, "STATUS") == "0"
    assert after(words, "CHILD") == "True"
    assert words[words.index("CHILD") + 2] != after(words, "PARENT")
    lake = tmp_path / "lake"
    assert counts(lake, "parent") == whole(20)
    assert counts(lake, "child") == whole(10)
    wait_gone(int(after(words, "PARENT")), timeout=30)  # its input closed when the parent ended


def test_exit_is_bounded_by_exit_timeout_when_the_lake_write_hangs(tmp_path: Path) -> None:
    # the writer process's first temp file is a FIFO: opening it for writing blocks for good
    proc = app(tmp_path, """
        writer = process.get_writer()
        hang_first_write(root, "hang", writer.writer_id)
        record("hang", [1])
        started = time.monotonic()
        say("FLUSH", xr.flush(0.5), round(time.monotonic() - started, 2))
        say("PID", writer.pid)
        say("RECORDED")
    """, {"exit_timeout_s": 1.0, "flush_interval_s": 3600})
    assert proc.stdout is not None
    words: list[str] = []
    while "RECORDED" not in words:
        line = proc.stdout.readline()
        assert line, words
        words += line.split()
    recorded = time.monotonic()
    proc.wait(timeout=30)
    elapsed = time.monotonic() - recorded
    writer_pid = int(after(words, "PID"))
    try:
        assert after(words, "FLUSH") == "False"
        assert float(words[words.index("FLUSH") + 2]) < 1.5
        assert elapsed < 1.0 + 3.0, f"exit took {elapsed:.2f}s"
        assert proc.returncode == 0
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(writer_pid, signal.SIGKILL)


def test_a_caller_waiting_for_room_gets_it_without_waiting_for_the_writers_cadence(
    tmp_path: Path,
) -> None:
    # Each stage's estimate (~2.4 MB) is over the application's hold (1 MiB) and its frame is
    # under the writer process's own trigger (256 KiB), so the application holds one record at
    # a time. At the cadence alone (120 s here), callers would wait out max_block_s and shed.
    started = time.monotonic()
    words = run_app(tmp_path, """
        record("big", range(6), n=4000)
        say("FLUSH", xr.flush(60), "DROPPED", sum(xr.stats()["dropped"].values()))
    """, {"max_buffer_bytes": 8 << 20, "flush_interval_s": 120}, timeout=100)
    assert after(words, "FLUSH") == "True" and after(words, "DROPPED") == "0"
    assert counts(tmp_path / "lake") == whole(6, n=4000)
    assert time.monotonic() - started < 60, "each record waited for the writer's cadence"


def test_records_neither_lake_nor_spool_takes_make_flush_false_and_are_reported_at_the_end(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")  # a file: neither lake nor spool can be a folder under it
    done = app(blocker, """
        record("lost", range(20))
        say("FLUSH", xr.flush(5))
        say("PID", process.get_writer().pid)
    """, {"exit_timeout_s": 0.5}, stderr=subprocess.PIPE)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    words = out.split()
    assert after(words, "FLUSH") == "False"
    # the writer process holds stderr open until it has given up and said so
    # 20 runs, 20 stages, 400 candidates
    assert "440 records were not written before exit" in err, err


def test_records_holding_application_classes_are_written_by_a_thread_of_the_app(
    tmp_path: Path,
) -> None:
    words = run_app(tmp_path, """
        from dataclasses import dataclass

        @dataclass
        class Doc:  # a class of the application: the writer process must not import it
            id: str
            ok: bool

        record("plain", range(5))
        for i in range(5):
            with xr.run("objs", run_id=f"objs-{i}") as run:
                with run.stage("s", type="filtering", passed="ok") as st:
                    docs = [Doc(f"c{j}", j % 3 != 0) for j in range(20)]
                    st.input(docs)
                    st.output(docs)
        say("FLUSH", xr.flush(60))
    """)
    assert after(words, "FLUSH") == "True"
    lake = tmp_path / "lake"
    assert counts(lake, "plain") == whole(5)
    assert counts(lake, "objs") == whole(5)


def test_under_the_drop_policy_the_application_sheds_whole_runs_and_says_so(
    tmp_path: Path,
) -> None:
    words = run_app(tmp_path, """
        record("d", range(300), n=500)
        say("FLUSH", xr.flush(60))
        stats = xr.stats()
        say("DROPPED", stats["dropped_total"], "INCOMPLETE", stats["runs_incomplete"])
    """, {"on_full": "drop", "max_buffer_bytes": 2 * 1024 * 1024})
    dropped, incomplete = int(after(words, "DROPPED")), int(after(words, "INCOMPLETE"))
    assert dropped > 0, "the bound was never reached: the test shows nothing"
    assert after(words, "FLUSH") == "False"
    con = duckdb.connect()
    lake = tmp_path / "lake"
    rows = con.execute(f"""
        select r.run_id, r.status, r.n_stages_shed, count(s.stage_id)
        from read_parquet('{lake}/runs/**/*.parquet', union_by_name=true) r
        left join read_parquet('{lake}/stages/**/*.parquet', union_by_name=true) s using (run_id)
        group by all""").fetchall()
    assert len(rows) == 300  # a run row for every run
    assert sum(1 for _, status, *_ in rows if status == "incomplete") == incomplete > 0
    for _, status, shed, stages in rows:  # every run is whole, or says what it lacks
        assert (status, shed, stages) in (("success", 0, 1), ("incomplete", 1, 0))


def test_configure_during_recording_returns_at_once_and_both_lakes_get_everything(
    tmp_path: Path,
) -> None:
    words = run_app(tmp_path, """
        record("a", range(50))
        started = time.monotonic()
        xr.configure(root=root + "2")
        say("CONFIGURE", round(time.monotonic() - started, 3))
        record("b", range(50))
        say("FLUSH", xr.flush(60))
        say("RUNS", xr.stats()["runs_recorded"])
    """)
    assert float(after(words, "CONFIGURE")) < 0.5
    assert after(words, "FLUSH") == "True"
    assert after(words, "RUNS") == "100"
    assert counts(tmp_path / "lake") == whole(50)
    assert counts(tmp_path / "lake2") == whole(50)


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false", "silent"])
def test_without_a_writer_process_records_go_to_a_thread_of_the_app(
    tmp_path: Path, executable: str,
) -> None:
    # "/nonexistent/python" cannot start; "/bin/false" starts and dies at once, every time;
    # "silent" starts and never answers (an interpreter that is not Python, a stuck start)
    if executable == "silent":
        silent = tmp_path / "silent"
        silent.write_text("#!/bin/sh\nexec sleep 600\n")
        silent.chmod(0o755)
        executable = str(silent)
    words = run_app(tmp_path, f"""
        from xray_lake.writer import sender
        sender.START_GRACE_S = 2.0
        sys.executable = {executable!r}
        record("f", range(30))
        say("FLUSH", xr.flush(60))
    """)
    assert after(words, "FLUSH") == "True"
    assert counts(tmp_path / "lake") == whole(30)
