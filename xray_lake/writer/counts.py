"""What `xr.stats()` adds up across writers: a thread writer's, a writer process's, replaced ones."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

# Counters that add up across writers (per-table ones are dicts of counts).
ADDITIVE = ("runs_recorded", "stages_recorded", "candidates_recorded", "files_written",
            "bytes_written", "flushes", "write_failures", "spooled_files", "replayed_rows",
            "replayed_files", "truncated_values", "dropped_total", "runs_incomplete",
            "blocked_calls", "blocked_s", "rows_written", "spooled_rows", "dropped",
            "dead_lettered")
_PER_TABLE = ("rows_written", "spooled_rows", "dropped")
_GAUGES = ("buffered_records", "buffered_bytes", "buffer_limit_bytes", "peak_buffered_bytes")


@dataclass
class Counters:
    """What a writer counts for `xr.stats()`; every record is counted exactly once in one of
    these."""

    runs_recorded: int = 0
    stages_recorded: int = 0
    candidates_recorded: int = 0
    rows_written: Counter[str] = field(default_factory=Counter)  # per table
    files_written: int = 0
    bytes_written: int = 0
    flushes: int = 0
    write_failures: int = 0
    spooled_rows: Counter[str] = field(default_factory=Counter)
    spooled_files: int = 0
    replayed_rows: int = 0
    replayed_files: int = 0
    truncated_values: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # per reason
    dead_lettered: int = 0  # records that cannot be encoded, set aside (writer/dead_letter.py)
    runs_incomplete: int = 0
    blocked_calls: int = 0  # recording calls that waited for room (on_full="block")
    blocked_s: float = 0.0  # their total wait

    def as_stats(self) -> dict[str, Any]:
        """Every counter under its own name (per-key ones as plain dicts), and dropped_total."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Counter) else value
        out["dropped_total"] = sum(self.dropped.values())
        out["blocked_s"] = round(self.blocked_s, 3)
        return out


def add_counts(into: dict[str, Any], counts: dict[str, Any], *,
               buffered: bool = False) -> None:
    """Add `counts` (one writer's stats()) into `into`; `buffered`: what it still holds too."""
    keys = (*ADDITIVE, "buffered_records", "buffered_bytes") if buffered else ADDITIVE
    for key in keys:
        value = counts.get(key, 0)
        if isinstance(value, dict):
            merged = dict(into.get(key, {}))
            for k, v in value.items():
                merged[k] = merged.get(k, 0) + v
            into[key] = merged
        else:
            into[key] = into.get(key, 0) + value


def empty_stats(hold: int) -> dict[str, Any]:
    """A writer's stats() before it has counted anything."""
    zero: dict[str, Any] = dict.fromkeys((*_GAUGES, *ADDITIVE), 0)
    zero.update({key: {} for key in _PER_TABLE})
    zero["buffer_limit_bytes"] = hold
    zero["blocked_s"] = 0.0
    return zero
