"""The progress bar of the long commands (demo, compact, doctor, replay): on stderr, on a terminal only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from xray_lake.cli import stderr


class Advance(Protocol):
    """Moves the bar to `done` (of `total`, once known), optionally under a new description."""

    def __call__(self, done: int, total: int | None = None, *,
                 description: str | None = None) -> None: ...


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Advance]:
    """A bar (description, bar, done/total, time) shown while the block runs, then erased.

    Drawn on stderr and only when stderr is a terminal, so piped output and logs stay clean.
    Yields the `Advance` to hand to the work as its progress callback.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    err = stderr()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, total: int | None = None, *,
                    description: str | None = None) -> None:
            bar.update(task, completed=done, total=total, description=description)

        yield advance
