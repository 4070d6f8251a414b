"""Writers SIGKILLed at random instants: no half-written file is ever visible, no flushed record lost.

Trials run in batches of concurrent writer processes forked from one "zygote" (a real Python
process that imported xray_lake once), so 50 kills cost seconds, not 50 interpreter starts.
Each writer records runs into a shared lake with tiny flush thresholds and fsync on, prints
`FLUSHED <run_id>` after every flush() that returned True, and is SIGKILLed 20-300 ms after
it started. Batches cover the lake (writes), the spool (lake unwritable), and the drain of the
spool into the lake by writers that are themselves killed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from tests._faults import unwritable
from xray_lake.cli import doctor as doctor_cli
from xray_lake.cli import replay as replay_cli
from xray_lake.storage.layout import TABLES, is_temp_file

# Dozens of writer processes SIGKILLed at random instants: tens of seconds.
pytestmark = pytest.mark.slow

WRITERS_PER_BATCH = 10
STAGES, CANDIDATES = 2, 20
# per run: one run row, STAGES stage rows, STAGES * CANDIDATES candidate rows
EXPECTED = {"runs": 1, "stages": STAGES, "candidates": STAGES * CANDIDATES}

ZYGOTE = textwrap.dedent(f"""
    import os, sys, time
    import xray_lake as xr

    def work(root, spool, tag):
        # the engine's file protocol under SIGKILL; a killed writer process is in
        # test_writer_process.py
        xr.configure(root=root, spool_dir=spool, fsync=True, flush_rows=60,
                     flush_interval_s=0.01, drain_interval_s=0.005, writer="thread")
        pending, i, deadline = [], 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            run_id = f"{{tag}}-{{i}}"
            with xr.run("crash", run_id=run_id) as run:
                for s in range({STAGES}):
                    with run.stage(f"s{{s}}", type="filtering", passed="ok") as st:
                        items = [{{"id": f"c{{j}}", "ok": j % 3 != 0}} for j in range({CANDIDATES})]
                        st.input(items)
                        st.output(items)
            pending.append(run_id)
            i += 1
            if i % 4 == 0 and xr.flush(10):
                print("\\n".join(f"FLUSHED {{r}}" for r in pending), flush=True)
                pending.clear()

    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "spawn":
            pid = os.fork()
            if pid == 0:
                fd = os.open(args[0], os.O_WRONLY | os.O_APPEND)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                try:
                    work(*args[1:])
                finally:
                    os._exit(0)
            print(f"PID {{pid}}", flush=True)
        elif cmd == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            print(f"REAPED {{status}}", flush=True)
""")


@dataclass
class Matrix:
    """What one kind of batch did: the fault matrix of the report."""

    trials: int = 0
    claimed: set[str] = field(default_factory=set)
    temps_left: int = 0


@dataclass
class Child:
    """One writer of a batch: when its kill clock started and how long after that it dies."""

    pid: int
    out: Path
    delay: float
    started: float | None
    alive: bool = True


class Zygote:
    """A Python process with xray_lake imported that forks writer children on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def spawn(self, out: Path, root: Path, spool: Path, tag: str) -> int:
        answer = self._ask(f"spawn {out} {root} {spool} {tag}")
        assert answer.startswith("PID "), answer
        return int(answer.split()[1])

    def reap(self, pid: int) -> int:
        answer = self._ask(f"reap {pid}")
        assert answer.startswith("REAPED "), answer
        return int(answer.split()[1])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def run_batch(zygote: Zygote, tmp: Path, root: Path, spool: Path, name: str,
              rng: random.Random) -> tuple[set[str], int]:
    """Start WRITERS_PER_BATCH writers and SIGKILL each at a random 20-300 ms; (claims, trials).

    Every third writer's clock starts when it starts (kills land in its first publishes), the
    others' at its first successful flush (kills land in steady writing, with records to lose).
    """
    children = []
    for k in range(WRITERS_PER_BATCH):
        out = tmp / f"{name}-{k}.out"
        out.touch()
        pid = zygote.spawn(out, root, spool, f"{name}w{k}")
        early = k % 3 == 0
        children.append(Child(pid, out, rng.uniform(0.02, 0.3), time.monotonic() if early else None))
    deadline = time.monotonic() + 20
    try:
        while any(c.alive for c in children):
            now = time.monotonic()
            assert now < deadline, "writers never flushed"
            for c in children:
                if c.alive and c.started is None and "FLUSHED" in c.out.read_text():
                    c.started = now
                if c.alive and c.started is not None and now >= c.started + c.delay:
                    os.kill(c.pid, signal.SIGKILL)
                    c.alive = False
            time.sleep(0.002)
    finally:
        for c in children:  # never leave a writer behind, even when this batch failed
            if c.alive:
                os.kill(c.pid, signal.SIGKILL)
    claims: set[str] = set()
    for c in children:
        status = zygote.reap(c.pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, c.out.read_text()
        complete_lines = c.out.read_text().split("\n")[:-1]  # a line cut by the kill is no claim
        claims |= {line.split()[1] for line in complete_lines if line.startswith("FLUSHED ")}
    return claims, len(children)


def assert_every_file_readable(folder: Path, seen: set[Path]) -> None:
    """pyarrow reads every new data file whole; DuckDB reads every table's glob."""
    for path in folder.rglob("*.parquet"):
        if path not in seen and "_quarantine" not in path.parts:
            pq.read_table(path)
            seen.add(path)
    con = duckdb.connect()
    for table in TABLES:
        if list(folder.glob(f"{table}/*/*/*.parquet")):
            con.sql(f"select count(*), count(distinct run_id), max(length(run_id)) from "
                    f"read_parquet('{folder}/{table}/*/*/*.parquet', hive_partitioning = true)"
                    ).fetchall()


def row_counts(root: Path) -> dict[str, Counter[str]]:
    """Rows per run_id in each table."""
    con = duckdb.connect()
    counts: dict[str, Counter[str]] = {}
    for table in TABLES:
        counts[table] = Counter()
        if list(root.glob(f"{table}/*/*/*.parquet")):
            rows = con.sql(f"select run_id, count(*) from read_parquet("
                           f"'{root}/{table}/*/*/*.parquet') group by run_id").fetchall()
            counts[table].update({run_id: n for run_id, n in rows})
    return counts


def assert_claims_landed_once(root: Path, claims: set[str]) -> None:
    counts = row_counts(root)
    for table, per_run in counts.items():
        missing = [r for r in claims if per_run[r] != EXPECTED[table]]
        assert not missing, f"{table}: flushed runs missing or wrong: {sorted(missing)[:5]} " \
                            f"({[per_run[r] for r in sorted(missing)[:5]]})"
        doubled = [r for r, n in per_run.items() if n > EXPECTED[table]]
        assert not doubled, f"{table}: rows written twice for {doubled[:5]}"


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and is_temp_file(p.name)]


def cli() -> typer.Typer:
    app = typer.Typer()
    replay_cli.register(app)
    doctor_cli.register(app)
    return app


def test_sigkill_at_random_instants_never_exposes_a_half_file_nor_loses_a_flushed_record(
    tmp_path: Path,
) -> None:
    rng = random.Random(int(os.environ.get("XRAY_LAKE_CRASH_SEED", time.time_ns())))
    lake_a, lake_b, spool = tmp_path / "lake-a", tmp_path / "lake-b", tmp_path / "spool"
    lake_b.mkdir()
    matrix: dict[str, Matrix] = {m: Matrix() for m in ("lake", "spool", "drain")}
    seen: set[Path] = set()
    zygote = Zygote()
    try:
        # lake A: killed while writing; lake B: killed while spooling (B unwritable), then
        # while draining that spool into B (B writable again) and writing; the last spool
        # batch is left for `xray-lake replay`.
        plan = [("lake", lake_a), ("spool", lake_b), ("drain", lake_b), ("lake", lake_a),
                ("spool", lake_b)]
        for i, (mode, root) in enumerate(plan):
            with unwritable(lake_b) if mode == "spool" else contextlib.nullcontext():
                claims, n = run_batch(zygote, tmp_path, root, spool, f"b{i}", rng)
            m = matrix[mode]
            m.trials += n
            m.claimed |= claims
            for folder in (lake_a, lake_b, spool):
                assert_every_file_readable(folder, seen)
            if mode == "lake":
                assert_claims_landed_once(lake_a, matrix["lake"].claimed)
    finally:
        zygote.close()
    assert sum(m.trials for m in matrix.values()) >= 50
    assert all(m.claimed for m in matrix.values()), {k: len(m.claimed) for k, m in matrix.items()}

    spooled_before = sorted(p.name for p in spool.rglob("*.parquet"))
    temps_before = {"lake-a": len(temps(lake_a)), "lake-b": len(temps(lake_b)),
                    "spool": len(temps(spool))}
    runner = CliRunner()
    replayed = runner.invoke(cli(), ["replay", "--spool", str(spool)])
    assert replayed.exit_code == 0, replayed.output
    assert not list(spool.rglob("*.parquet"))
    assert spooled_before
    assert set(spooled_before) <= {p.name for p in lake_b.rglob("*.parquet")}
    assert_claims_landed_once(lake_a, matrix["lake"].claimed)
    assert_claims_landed_once(lake_b, matrix["spool"].claimed | matrix["drain"].claimed)
    assert not row_counts(lake_b)["runs"].keys() & matrix["lake"].claimed  # B never got A's

    for lake in (lake_a, lake_b):
        fixed = runner.invoke(cli(), ["doctor", "--root", str(lake), "--fix", "--format", "json"])
        assert fixed.exit_code == 0, fixed.output
        assert not temps(lake)
        assert not (lake / "_quarantine").exists(), "a published file was unreadable"
        assert_every_file_readable(lake, seen)
    print(f"\ncrash matrix: trials={ {k: m.trials for k, m in matrix.items()} } "
          f"flushed runs claimed={ {k: len(m.claimed) for k, m in matrix.items()} } "
          f"lost=0 doubled=0 temps left by kills={temps_before} "
          f"spooled files replayed by CLI={len(spooled_before)} "
          f"runs in lake A={len(row_counts(lake_a)['runs'])} "
          f"in lake B={len(row_counts(lake_b)['runs'])}")
