"""Real faults shared by the reliability tests: folders that refuse writes, even for root."""

from __future__ import annotations

import contextlib
import os
import subprocess
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
