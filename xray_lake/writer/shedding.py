"""The account of what a writer shed: counted by reason, and charged to its run.

Whole runs or nothing: a run row is always written, and it says what of its run was shed
(`status='incomplete'`, `n_stages_shed`, `n_candidates_shed`; records/build.py).
"""

from __future__ import annotations

import logging

from xray_lake.writer.counts import Counters

logger = logging.getLogger("xray_lake")

MAX_OPEN_RUNS = 100_000  # runs with shed records whose run row has not come yet
REASONS = {
    "buffer_full": "the records held reached their share of max_buffer_bytes and "
                   "on_full='drop' (or the record came from the writer's own thread)",
    "block_timeout": "a recording call waited max_block_s for the writer to make room",
    "run_incomplete": "an earlier record of the same run was shed (on_full='drop' sheds "
                      "whole runs where it can)",
    "closed": "the writer was closed at exit",
    "encode_error": "a record could not be encoded",
    "internal_error": "recording a stage failed inside xray-lake (see xr.stats()"
                      "['internal_errors'] and the log)",
}


class ShedLedger:
    """Run id -> [stage records, candidates] shed, until the run's row settles it."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._runs: dict[str, list[int]] = {}
        self._warned: set[str] = set()

    def charge(self, reason: str | None, run_id: str | None, records: int, n: int) -> None:
        """Count `records` shed for `reason` (None: set aside as dead letters, which warn
        themselves); a stage's (`run_id` given) are charged to its run."""
        if reason is None:
            self._counters.dead_lettered += records
        else:
            self._counters.dropped[reason] += records
        if run_id is not None:
            shed = self._runs.get(run_id)
            if shed is None:
                if len(self._runs) >= MAX_OPEN_RUNS:  # runs whose row never came
                    self._runs.pop(next(iter(self._runs)))
                shed = self._runs[run_id] = [0, 0]
            shed[0] += 1
            shed[1] += n
        if reason is not None and reason not in self._warned:
            self._warned.add(reason)
            logger.warning("xray-lake: shedding records (%s): %s; counted in "
                           "xr.stats()['dropped'], their runs are written with status "
                           "'incomplete'", reason, REASONS.get(reason, reason))

    def lost_part_of(self, run_id: str) -> bool:
        return run_id in self._runs

    def settle(self, run_id: str) -> list[int] | None:
        """What was shed of the run whose row is being written ([stages, candidates])."""
        return self._runs.pop(run_id, None)
