"""`doctor`: every kind of bad file is reported, --fix quarantines it, and the lake reads again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli import doctor as doctor_cli
from xray_lake.storage import doctor, tempfiles
from xray_lake.storage.tempfiles import host_tag

RUNS, STAGES_PER_RUN, CANDIDATES_PER_STAGE = 4, 2, 5


def record(n: int = RUNS) -> None:
    for i in range(n):
        with xr.run("p", run_id=f"r{i}") as run:
            for s in range(STAGES_PER_RUN):
                with run.stage(f"s{s}", type="retrieval") as st:
                    st.output([{"id": j} for j in range(CANDIDATES_PER_STAGE)])
        assert xr.flush(10)  # one file per table per run: real files to break


def dead_pid() -> int:
    """A pid that just existed on this host and is gone now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def data_files(root: Path, table: str) -> list[Path]:
    return sorted(root.glob(f"{table}/*/*/*.parquet"))


def temp_name(host: str, pid: int) -> str:
    return f".part-v1-{host}-{pid}-deadbeef-00000001.parquet.tmp"


@pytest.fixture
def lake_root(isolated_lake: str) -> Path:
    record()
    return Path(isolated_lake)


def break_lake(root: Path) -> dict[str, str]:
    """One file of every bad kind (plus harmless temps); returns relative path -> kind."""
    runs_dir = data_files(root, "runs")[0].parent
    date = runs_dir.name
    bad: dict[str, str] = {}

    corrupt = runs_dir / "part-v1-x.parquet"
    corrupt.write_bytes(os.urandom(4096))
    bad[str(corrupt.relative_to(root))] = doctor.UNREADABLE

    good_stage = data_files(root, "stages")[0]
    truncated = good_stage.parent / "part-v1-truncated-00000001.parquet"
    data = good_stage.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    bad[str(truncated.relative_to(root))] = doctor.UNREADABLE

    foreign = data_files(root, "candidates")[0].parent / "part-v1-foreign-00000001.parquet"
    pq.write_table(pa.table({"run_id": [1, 2], "candidate_id": ["a", "b"]}), foreign)
    bad[str(foreign.relative_to(root))] = doctor.FOREIGN_SCHEMA

    misplaced = root / "runs" / "label=p" / f"dat={date.removeprefix('date=')}"
    misplaced.mkdir()
    shutil.copy(data_files(root, "runs")[0], misplaced / "part-v1-misplaced-00000001.parquet")
    bad[str((misplaced / "part-v1-misplaced-00000001.parquet").relative_to(root))] = (
        doctor.BAD_PARTITION)

    stale = runs_dir / temp_name(host_tag(), dead_pid())
    stale.write_bytes(b"PAR1 half a file")
    bad[str(stale.relative_to(root))] = doctor.STALE_TEMP

    abandoned = runs_dir / temp_name("some-other-host", 4242)
    abandoned.write_bytes(b"PAR1")
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))
    bad[str(abandoned.relative_to(root))] = doctor.STALE_TEMP

    # still being written: a live pid here, a fresh file from elsewhere
    (runs_dir / temp_name(host_tag(), os.getpid())).write_bytes(b"PAR1")
    (runs_dir / temp_name("some-other-host", 4243)).write_bytes(b"PAR1")
    return bad


def test_scan_of_a_healthy_lake_finds_nothing(lake_root: Path) -> None:
    report = doctor.scan(str(lake_root))
    assert report.ok and report.problems == []
    assert report.files_checked == 3 * RUNS


def test_scan_reports_every_kind_of_bad_file(lake_root: Path) -> None:
    bad = break_lake(lake_root)
    report = doctor.scan(str(lake_root))
    assert {p.path: p.kind for p in report.problems} == bad
    assert not report.ok
    assert report.temps_in_use == 2
    details = {p.kind: p.detail for p in report.problems}
    assert "run_id" in details[doctor.FOREIGN_SCHEMA]
    assert "dat=" in details[doctor.BAD_PARTITION]


def test_fix_quarantines_bad_files_and_then_queries_work(lake_root: Path) -> None:
    bad = break_lake(lake_root)
    with pytest.raises(xr.LakeReadError):
        xr.Lake(str(lake_root)).sql("select * from stages")
    report = doctor.scan(str(lake_root), fix=True)
    assert report.ok and all(p.fixed for p in report.problems)
    for rel, kind in bad.items():
        assert not (lake_root / rel).exists()
        quarantined = lake_root / "_quarantine" / rel
        assert quarantined.exists() == (kind != doctor.STALE_TEMP)
    assert len(list(lake_root.rglob(".*.tmp"))) == 2  # the temps still being written stay
    lake = xr.Lake(str(lake_root))
    counts = {t: lake.sql(f"select count(*) as n, count(distinct run_id) as runs from {t}").row(0)
              for t in ("runs", "stages", "candidates")}
    assert counts == {"runs": (RUNS, RUNS), "stages": (RUNS * STAGES_PER_RUN, RUNS),
                      "candidates": (RUNS * STAGES_PER_RUN * CANDIDATES_PER_STAGE, RUNS)}
    again = doctor.scan(str(lake_root))
    assert again.ok and again.problems == []


def test_fix_never_overwrites_an_earlier_quarantined_file(lake_root: Path) -> None:
    folder = data_files(lake_root, "runs")[0].parent
    for content in (b"first", b"second"):
        (folder / "part-v1-x.parquet").write_bytes(content)
        assert doctor.scan(str(lake_root), fix=True).ok
    kept = sorted((lake_root / "_quarantine").rglob("part-v1-x.parquet*"))
    assert [p.read_bytes() for p in kept] == [b"first", b"second"]


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_query_over_a_broken_file_names_it_and_points_to_doctor(lake_root: Path,
                                                               damage: str) -> None:
    victim = data_files(lake_root, "stages")[1]
    data = victim.read_bytes()
    victim.write_bytes(os.urandom(len(data)) if damage == "corrupt" else data[: len(data) // 2])
    with pytest.raises(xr.LakeReadError) as caught:
        xr.Lake(str(lake_root)).sql("select name, count(*) from stages group by name")
    message = str(caught.value)
    assert victim.name in message
    assert "xray-lake doctor --fix" in message


def test_clean_stale_temps_removes_only_temps_of_dead_writers(tmp_path: Path) -> None:
    dead = tmp_path / "a" / temp_name(host_tag(), dead_pid())
    dead.parent.mkdir()
    dead.write_bytes(b"x")
    alive = tmp_path / temp_name(host_tag(), os.getpid())
    alive.write_bytes(b"x")
    replaying = tmp_path / (".part-v1-h-1-deadbeef-00000001.parquet."
                            f"{host_tag()}-{os.getpid()}-0123abcd.tmp")
    replaying.write_bytes(b"x")  # written by a live replayer on behalf of a dead writer
    data = tmp_path / "part-v1-h-1-deadbeef-00000001.parquet"
    data.write_bytes(b"x")
    assert tempfiles.clean_stale_temps(str(tmp_path)) == [str(dead)]
    assert alive.exists() and replaying.exists() and data.exists()


def app() -> typer.Typer:
    cli = typer.Typer()
    doctor_cli.register(cli)
    cli.command("noop", hidden=True)(lambda: None)  # keep `doctor` a subcommand
    return cli


def test_cli_reports_problems_with_exit_1_and_fix_brings_exit_0(lake_root: Path) -> None:
    bad = break_lake(lake_root)
    runner = CliRunner()
    found = runner.invoke(app(), ["doctor", "--root", str(lake_root)])
    assert found.exit_code == 1, found.output
    assert "part-v1-x.parquet" in found.output and "--fix" in found.output
    fixed = runner.invoke(app(), ["doctor", "--root", str(lake_root), "--fix",
                                  "--format", "json"])
    assert fixed.exit_code == 0, fixed.output
    report = json.loads(fixed.stdout)
    assert report["ok"] is True
    assert {p["path"]: p["kind"] for p in report["problems"]} == bad
    assert all(p["fixed"] for p in report["problems"])
    clean = runner.invoke(app(), ["doctor", "--root", str(lake_root)])
    assert clean.exit_code == 0, clean.output
    assert f"{3 * RUNS} data files checked" in clean.output


def test_cli_json_of_a_healthy_lake(lake_root: Path) -> None:
    result = CliRunner().invoke(app(), ["doctor", "--root", str(lake_root), "-f", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["problems"] == []


def test_cli_on_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app(), ["doctor", "--root", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert isinstance(result.exception, xr.XrayLakeError)
    assert "no lake at" in str(result.exception)


def test_a_lock_temp_a_killed_replayer_left_in_compaction_is_removed_by_fix(
        tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)  # that process has exited: its temp files are abandoned
    folder = tmp_path / "lake" / "_compaction"
    folder.mkdir(parents=True)
    left = folder / f".runs.abc.2026-01-01.lock.{host_tag()}-{dead_pid}-deadbeef.tmp"
    left.write_text("{}")
    found = doctor.scan(str(tmp_path / "lake"), fix=True)
    assert [p.path for p in found.problems] == [f"_compaction/{left.name}"]
    assert not left.exists()
