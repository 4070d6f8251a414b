"""Rows waiting to be written, grouped by partition (label, date) and table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from xray_lake.records.pending import PendingRows, to_tables
from xray_lake.records.schema import SCHEMAS, candidates_table
from xray_lake.writer.dead_letter import mend

# Written in this order so that a reader who sees a run row also sees its stages, and a
# stage row its candidates (within one flush).
WRITE_ORDER = ("candidates", "stages", "runs")


@dataclass
class PartitionBuffer:
    """Everything buffered for one label/date; each table is cleared once it is published."""

    label: str
    date: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[PendingRows] = field(default_factory=list)
    nbytes: int = 0
    n_candidates: int = 0
    # (table, rows, error) that no table can hold, for the writer to dead-letter and count
    set_aside: list[tuple[str, Any, Exception]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.runs or self.stages or self.candidates)

    def table(self, name: str) -> pa.Table | None:
        """The buffered rows of table `name` as one Arrow table (None when there are none).

        Rows Arrow cannot take are repaired (a lone surrogate, legal in JSON and in Python but
        not in UTF-8, is escaped as `\\udXXX`), or set aside in `set_aside` for the writer to
        dead-letter (writer/dead_letter.py): one bad record never stops the writer.
        """
        try:
            return self._table(name)
        except MemoryError:
            raise
        except Exception:
            units: list[Any] = self._units(name)
            for unit, exc in mend(units, name, partial(self._build, name)):
                self.set_aside.append((name, unit, exc))
                if isinstance(unit, PendingRows):
                    self.n_candidates -= unit.num_rows
            return self._table(name)

    def _units(self, name: str) -> list[Any]:
        return self.candidates if name == "candidates" else (
            self.runs if name == "runs" else self.stages)

    def _build(self, name: str, units: Sequence[Any]) -> pa.Table:
        if name == "candidates":
            # promoted fields (extra columns) may differ per batch: unified here
            return candidates_table(to_tables(units))
        return pa.Table.from_pylist(list(units), SCHEMAS[name])

    def _table(self, name: str) -> pa.Table | None:
        units = self._units(name)
        return self._build(name, units) if units else None

    def rows(self, name: str) -> int:
        if name == "candidates":
            return self.n_candidates
        return len(self.runs if name == "runs" else self.stages)

    def clear(self, name: str) -> None:
        if name == "candidates":
            self.candidates = []
            self.n_candidates = 0
        elif name == "runs":
            self.runs = []
        else:
            self.stages = []
        if self.is_empty():
            self.nbytes = 0
