"""What `xr.stats()` adds up across writers: a thread writer's, a writer process's, replaced ones."""

from __future__ import annotations

from typing import Any

# Counters that add up across writers (per-table ones are dicts of counts).
ADDITIVE = ("runs_recorded", "stages_recorded", "candidates_recorded", "files_written",
            "bytes_written", "flushes", "write_failures", "spooled_files", "replayed_rows",
            "replayed_files", "truncated_values", "dropped_total", "runs_incomplete",
            "blocked_calls", "blocked_s", "rows_written", "spooled_rows", "dropped",
            "dead_lettered")
_PER_TABLE = ("rows_written", "spooled_rows", "dropped")
_GAUGES = ("buffered_records", "buffered_bytes", "buffer_limit_bytes", "peak_buffered_bytes")


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
