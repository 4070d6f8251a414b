"""How a writer spends `max_buffer_bytes`, and how it gives freed Arrow memory back."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from xray_lake.config import Settings

logger = logging.getLogger("xray_lake")

# Share of max_buffer_bytes that records may hold, queued or buffered. The rest is reserved
# for what the bound must also cover but no record owns: the working set of encoding one
# record (blob copies, Arrow temporaries) and of writing one table (Parquet pages, zstd
# contexts, a whole file for object storage), plus memory the allocators keep between
# releases. Measured with benchmarks/memory_burst.py (peak RSS growth vs the bound).
HOLD_SHARE = 0.5
# Buffers are written once they reach this share of the hold: a write's working set grows
# with the table (figures in benchmarks/RESULTS.md), and the queue keeps 3/4 of the hold to
# take records while the table is written.
FLUSH_SHARE = 0.25
RELEASE_STEPS = 8  # freed Arrow memory is returned after every reserved/8 bytes encoded


@dataclass(frozen=True)
class MemoryPlan:
    """How one `max_buffer_bytes` is split; fixed for a writer's lifetime."""

    bound: int  # max_buffer_bytes
    hold: int  # what queued + buffered records may reach; past it they are dropped
    reserved: int  # bound - hold: working sets of encoding and writing, allocator slack
    flush_at: int  # buffered bytes that trigger a write (<= flush_bytes)
    wake_at: int  # queued bytes that wake the worker before its drain interval
    release_every: int  # records encoded (by estimate) between returns of freed memory

    @classmethod
    def of(cls, settings: Settings) -> MemoryPlan:
        bound = settings.max_buffer_bytes
        hold = int(bound * HOLD_SHARE)
        flush_at = max(min(settings.flush_bytes, int(hold * FLUSH_SHARE)), 1)
        reserved = bound - hold
        return cls(bound, hold, reserved, flush_at, max(flush_at // 2, 1),
                   max(reserved // RELEASE_STEPS, 1))


def release_unused() -> None:
    """Return the Arrow pool's freed pages to the OS; call it on the thread that allocated
    them, after each write and every `release_every` encoded bytes.

    mimalloc (pyarrow's default pool) and jemalloc keep freed memory for reuse: without
    this, the Arrow temporaries of encoding and the batches just written stay resident
    (benchmarks/memory_burst.py; figures in benchmarks/RESULTS.md). A call is cheap: it
    touches only free pages.
    """
    try:
        pa.default_memory_pool().release_unused()
    except Exception:  # a pool without it: only memory is at stake
        logger.debug("xray-lake: release_unused failed", exc_info=True)
