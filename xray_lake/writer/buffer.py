"""Rows waiting to be written, grouped by partition (label, date) and table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from xray_lake._internal_errors import warn_once
from xray_lake.records.pending import PendingRows, to_tables
from xray_lake.records.schema import SCHEMAS, candidates_table
from xray_lake.records.values import escape_surrogates

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

    def is_empty(self) -> bool:
        return not (self.runs or self.stages or self.candidates)

    def table(self, name: str) -> pa.Table | None:
        """The buffered rows of table `name` as one Arrow table (None when there are none).

        A string Arrow cannot take (a lone surrogate: legal in JSON and in Python, not in
        UTF-8) is escaped as `\\udXXX` in every buffered row, once, and the table built
        again: one bad id or message never stops the writer.
        """
        try:
            return self._table(name)
        except UnicodeEncodeError:
            self._escape_surrogates(name)
            warn_once(f"surrogates:{name}", "xray-lake: some %s values held lone surrogates, "
                      "which UTF-8 cannot encode; they are stored escaped (\\udXXX)", name)
            return self._table(name)

    def _escape_surrogates(self, name: str) -> None:
        if name == "candidates":
            for rows in self.candidates:
                rows.run_id = escape_surrogates(rows.run_id)
                rows.stage = tuple(map(escape_surrogates, rows.stage))
                for column in ("ids", "reason_label", "reason_text", "reason"):
                    setattr(rows, column, tuple(map(escape_surrogates, getattr(rows, column))))
            return
        for row in self.runs if name == "runs" else self.stages:
            for key, value in row.items():
                if isinstance(value, dict):
                    row[key] = {escape_surrogates(k): v for k, v in value.items()}
                else:
                    row[key] = escape_surrogates(value)

    def _table(self, name: str) -> pa.Table | None:
        schema = SCHEMAS[name]
        if name == "candidates":
            # promoted fields (extra columns) may differ per batch: unified here
            return candidates_table(to_tables(self.candidates)) if self.candidates else None
        rows = self.runs if name == "runs" else self.stages
        return pa.Table.from_pylist(rows, schema) if rows else None

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
