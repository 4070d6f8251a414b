"""Nothing escapes the root: symbolic links in a lake are never followed (storage.confine)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import xray_lake as xr
from tests.test_replay import spool_while_unwritable
from xray_lake.errors import QueryError, XrayLakeError
from xray_lake.storage import doctor
from xray_lake.storage.spool import pending, replay_folder, spool_root


def record(label: str, runs: int) -> None:
    """`runs` runs of `label`, one flush each: one small file per run, table and partition."""
    for i in range(runs):
        with xr.run(label, run_id=f"{label}-{i}") as run, \
                run.stage("s", type="filtering", passed="ok") as st:
            items = [{"id": f"c{j}", "ok": j % 2 == 0} for j in range(4)]
            st.input(items)
            st.output(items)
        assert xr.flush(10)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def linked(isolated_lake: str, tmp_path: Path) -> tuple[Path, Path]:
    """A lake whose `runs/label=archive` is a link to a folder outside it (two small files)."""
    record("shop", 2)
    record("archive", 2)
    lake = Path(isolated_lake)
    outside = tmp_path / "outside"
    shutil.move(lake / "runs" / "label=archive", outside)
    os.symlink(outside, lake / "runs" / "label=archive")
    assert len(list(outside.glob("*/*.parquet"))) == 2
    return lake, outside


def test_compaction_never_deletes_or_writes_through_a_link_out_of_the_lake(
        linked: tuple[Path, Path]) -> None:
    lake, outside = linked
    before = snapshot(outside)
    report = xr.compact(str(lake), before="2999-01-01")
    assert report.errors == ()
    assert not any(p.label == "archive" and p.table == "runs" for p in report.partitions)
    assert report.files_in == 2 * 3 + 2 * 2  # shop: 3 tables; archive: stages, candidates
    assert snapshot(outside) == before


def test_compaction_skips_a_data_file_that_is_a_link(isolated_lake: str,
                                                     tmp_path: Path) -> None:
    record("shop", 2)
    lake = Path(isolated_lake)
    folder = next((lake / "runs").glob("*/*"))
    stray = tmp_path / "stray.parquet"
    shutil.copy(next(folder.glob("*.parquet")), stray)
    link = folder / "part-v1-linked-00000001.parquet"
    os.symlink(stray, link)
    report = xr.compact(str(lake), before="2999-01-01")
    runs = [p for p in report.partitions if p.table == "runs"]
    assert [p.files_in for p in runs] == [2]
    assert link.is_symlink() and stray.exists()


def test_compaction_refuses_a_compaction_folder_that_is_a_link(isolated_lake: str,
                                                               tmp_path: Path) -> None:
    record("shop", 2)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, Path(isolated_lake) / "_compaction")
    with pytest.raises(XrayLakeError, match="symbolic link"):
        xr.compact(isolated_lake, before="2999-01-01")
    assert list(outside.iterdir()) == []


def test_doctor_reports_links_and_never_touches_what_they_point_at(
        linked: tuple[Path, Path]) -> None:
    lake, outside = linked
    (outside / "date=2024-01-01").mkdir()
    (outside / "date=2024-01-01" / "part-v1-broken-00000001.parquet").write_bytes(b"junk")
    before = snapshot(outside)
    report = doctor.scan(str(lake), fix=True)
    links = [p for p in report.problems if p.kind == doctor.LINK]
    assert [p.path for p in links] == ["runs/label=archive"]
    assert "out of the lake" in links[0].detail and not links[0].fixed
    assert not report.ok
    assert snapshot(outside) == before
    assert not (lake / "_quarantine").exists()


def test_readers_never_read_through_a_link_out_of_the_lake(linked: tuple[Path, Path]) -> None:
    lake, _outside = linked
    for read_only in (True, False):
        with xr.Lake(str(lake), read_only=read_only) as db:
            assert db.sql("select count(*) from runs").item() == 2  # shop only
            assert db.sql("select count(*) from stages").item() == 4
            assert db.sql("select count(*) from runs where label = 'archive'").item() == 0
    with xr.Lake(str(lake)) as db, pytest.raises(QueryError):
        db.sql(f"select * from read_parquet('{lake}/runs/label=archive/*/*.parquet')")


def test_replay_never_writes_through_a_link_out_of_the_lake(tmp_path: Path) -> None:
    lake, spool = tmp_path / "lake", tmp_path / "spool"
    spool_while_unwritable(lake, spool, 2, "archive")
    outside = tmp_path / "outside"
    outside.mkdir()
    (lake / "candidates").mkdir(parents=True, exist_ok=True)
    os.symlink(outside, lake / "candidates" / "label=archive")
    folder = spool_root(str(spool), str(lake))
    result = replay_folder(folder, str(lake), fsync=False)
    assert result.failed == 1 and "symbolic link" in (result.error or "")
    assert list(outside.iterdir()) == []
    assert len(pending(folder)) == 3  # kept for a replay once the link is gone
