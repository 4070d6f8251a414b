"""Real faults shared by the reliability tests: folders that refuse writes, even for root, and
lake writes that hang."""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """Make `folder` and every folder in it refuse new entries: mode 555, or chattr +i for root."""
    folder.mkdir(parents=True, exist_ok=True)
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    root_user = os.geteuid() == 0
    for path in folders:
        if root_user:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o555)
    try:
        for path in folders:
            with contextlib.suppress(PermissionError):
                (path / "probe").mkdir()
                raise AssertionError(f"{path} is still writable")
        yield
    finally:
        for path in folders:
            if root_user:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(0o755)


# Source for a child process: `hang_first_write(root, label, writer_id)` puts a FIFO where that
# writer creates its first temp file, in each table's partition of `label` for yesterday, today
# and tomorrow (a test running at midnight still hits one). Opening a FIFO for writing blocks
# until a reader comes, and none ever does: the write hangs for real, as on a dead NFS mount.
HANG_FIRST_WRITE = textwrap.dedent("""
    def hang_first_write(root, label, writer_id):
        import datetime, os
        from xray_lake.records.schema import SCHEMA_VERSION
        from xray_lake.storage.layout import data_file_name, partition_dir, temp_file_name
        temp = temp_file_name(data_file_name(writer_id, 1, SCHEMA_VERSION))
        today = datetime.datetime.now(datetime.UTC).date()
        for day in (today - datetime.timedelta(days=1), today, today + datetime.timedelta(days=1)):
            for table in ("candidates", "stages", "runs"):
                folder = partition_dir(root, table, label, day.isoformat())
                os.makedirs(folder, exist_ok=True)
                os.mkfifo(os.path.join(folder, temp))
""")
