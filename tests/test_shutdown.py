"""Exit-safety: a process whose lake write hangs for real still exits within exit_timeout_s.

The hang is real, not mocked: before recording, the child puts a FIFO where its writer will
create its first temp file (`<partition>/.part-v<schema>-<writer id>-00000001.parquet.tmp`). Opening
a FIFO for writing blocks until a reader comes, and none ever does, so the writer thread is
stuck inside the Parquet write exactly as on a dead NFS mount or a stalled FUSE disk.
(That a process exiting without flush() still lands its records is in test_writer.py.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests._faults import HANG_FIRST_WRITE

EXIT_TIMEOUT_S = 1.0
MARGIN_S = 3.0  # interpreter start-up is measured separately; this covers teardown on a busy box

CHILD = HANG_FIRST_WRITE + textwrap.dedent("""
    import atexit, sys, time

    def report():  # registered before xray_lake's own handler, so it runs after it
        from xray_lake.writer import process
        writer = process.current_writer()
        print("CLOSED", writer.stats()["buffered_records"] if writer else -1, flush=True)

    atexit.register(report)

    import xray_lake as xr
    from xray_lake.writer import process

    root, exit_timeout, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    xr.configure(root=root, exit_timeout_s=exit_timeout, flush_interval_s=3600, fsync=False,
                 drain_interval_s=0.01, writer="thread")  # the engine's own bound
    hang_first_write(root, "hang", process.get_writer().sink.writer_id)

    def record(run_id):
        with xr.run("hang", run_id=run_id) as run:
            with run.stage("search", type="retrieval") as st:
                st.output([{"id": j} for j in range(5)])

    record("r1")
    if mode == "flush":
        started = time.monotonic()
        ok = xr.flush(0.5)
        print("FLUSH", ok, round(time.monotonic() - started, 3), flush=True)
        started = time.monotonic()
        record("r2")  # the pipeline goes on: recording never waits for the stuck writer
        print("RECORD", round(time.monotonic() - started, 3), flush=True)
    print("RECORDED", flush=True)
""")


def run_child(root: Path, mode: str) -> tuple[list[str], float]:
    """Run the child; returns its output as words and the seconds from RECORDED to its exit."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(EXIT_TIMEOUT_S), mode],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines = []
    try:
        while True:
            line = child.stdout.readline()
            assert line, f"child ended early: {lines}"
            lines.append(line.strip())
            if line.startswith("RECORDED"):
                break
        recorded = time.monotonic()
        rest, _ = child.communicate(timeout=EXIT_TIMEOUT_S + 30)
        elapsed = time.monotonic() - recorded
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    return " ".join([*lines, rest]).split(), elapsed


def fifos(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp") if p.is_fifo()]


@pytest.mark.slow
def test_exit_with_a_hung_lake_write_is_bounded_by_exit_timeout(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lines, elapsed = run_child(root, "exit")
    assert elapsed < EXIT_TIMEOUT_S + MARGIN_S, f"exit took {elapsed:.2f}s"
    assert elapsed >= EXIT_TIMEOUT_S * 0.9  # it did wait for the stuck write, as long as allowed
    closed = int(lines[lines.index("CLOSED") + 1])
    assert closed > 0  # the records were still stuck behind the hung write: a real hang
    assert not list(root.rglob("*.parquet"))
    assert len(fifos(root)) == 9  # nobody ever managed to write through a FIFO


@pytest.mark.slow
def test_flush_with_a_hung_lake_write_returns_false_on_time_and_recording_goes_on(
    tmp_path: Path,
) -> None:
    lines, elapsed = run_child(tmp_path / "lake", "flush")
    flush = lines[lines.index("FLUSH") + 1: lines.index("FLUSH") + 3]
    assert flush[0] == "False"
    assert float(flush[1]) == pytest.approx(0.5, abs=0.4)
    assert float(lines[lines.index("RECORD") + 1]) < 0.2
    assert elapsed < EXIT_TIMEOUT_S + MARGIN_S, f"exit took {elapsed:.2f}s"


@pytest.mark.slow
def test_records_neither_lake_nor_spool_took_by_exit_are_reported_not_lost_silently(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")  # a file: neither lake nor spool can be a folder under it
    code = textwrap.dedent("""
        import sys
        import xray_lake as xr
        xr.configure(root=sys.argv[1], spool_dir=sys.argv[2], exit_timeout_s=0.3,
                     writer="thread")  # the writer process's own report: test_writer_process
        for i in range(100):
            with xr.run("p", run_id=f"r{i}") as run, run.stage("s", type="retrieval") as st:
                st.output([{"id": 1}])
    """)
    done = subprocess.run([sys.executable, "-c", code, str(blocker / "lake"),
                           str(blocker / "spool")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "300 records were not written before exit" in done.stderr


@pytest.mark.slow
def test_once_exit_has_reported_no_writer_thread_writes_to_stderr(tmp_path: Path) -> None:
    # a daemon thread writing to stderr while the interpreter finalizes aborts it (SIGABRT,
    # "_enter_buffered_busy"): after the exit handler, only the exiting thread logs
    code = textwrap.dedent("""
        import logging, sys, threading
        import xray_lake as xr
        from xray_lake.writer import process
        xr.configure(root=sys.argv[1], writer="thread")
        process._at_exit()
        log = logging.getLogger("xray_lake")
        late = threading.Thread(target=lambda: log.warning("late: from a writer thread"))
        late.start()
        late.join()
        log.warning("late: from the exiting thread")
    """)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lake")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "late: from the exiting thread" in done.stderr
    assert "from a writer thread" not in done.stderr
