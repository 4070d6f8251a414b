"""Memory workload: the writer's RSS under a burst of `factor` x `max_buffer_bytes` of candidates.

Run (its own process, so RSS is the SDK's alone):
    python benchmarks/memory_burst.py [--bound-mib 64] [--factor 10] [--json PATH]

A filtering stage over 5,000 product dicts (hot_path.py's) is called back to back until the
candidate JSON offered to the SDK adds up to `factor` x the bound, far faster than the writer
can encode and write it. A thread samples RSS every 2 ms (psutil, else /proc/self/statm) from
before the burst until `xr.flush()` returns. With default settings the caller waits for room at
the bound (`on_full="block"`) and nothing is dropped (`records_dropped` should be 0), so peak RSS
minus the baseline taken before the burst should stay within the bound. The bound covers the records held (queued and
buffered: `writer_buffer_limit_bytes`, half of it) and the working sets of encoding and writing
(the other half); see `max_buffer_bytes` in xray_lake/config.py. `rss_after_flush_bytes` is
what stays resident once everything is written (allocator memory not returned).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import threading
import time
from typing import Any

import orjson
import pyarrow as pa
from _common import rss_bytes
from hot_path import instrumented_filter, make_products

import xray_lake as xr


class Sampler(threading.Thread):
    """Peak RSS seen since start, sampled every `interval` seconds."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.peak = rss_bytes()
        self.peak_buffered = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self.peak_buffered = max(self.peak_buffered, xr.stats()["buffered_bytes"])
            self.samples += 1
            time.sleep(self.interval)


def burst(root: str, bound: int, factor: float, candidates: int) -> dict[str, Any]:
    xr.configure(root=root, max_buffer_bytes=bound, fsync=False, exit_timeout_s=120)
    products = make_products(candidates)
    list_bytes = len(orjson.dumps(products))
    instrumented_filter(products[:100])  # start the writer thread, load every code path
    assert xr.flush(60), f"warm-up flush failed: {xr.stats()}"
    gc.collect()
    time.sleep(0.2)
    baseline = rss_bytes()
    pool = pa.default_memory_pool()
    arrow_before = pool.bytes_allocated()
    calls = math.ceil(factor * bound / list_bytes)
    before = xr.stats()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    for _ in range(calls):
        instrumented_filter(products)
    burst_s = time.perf_counter() - t0
    peak_burst = sampler.peak
    flushed = xr.flush(300)
    flush_s = time.perf_counter() - t0 - burst_s
    sampler.stop.set()
    sampler.join()
    after = xr.stats()
    residual = rss_bytes() - baseline
    offered_rows = calls * candidates
    recorded = after["candidates_recorded"] - before["candidates_recorded"]
    dropped = after["dropped_total"] - before["dropped_total"]
    growth = sampler.peak - baseline
    return {
        "bound_bytes": bound,
        "factor": factor,
        "calls": calls,
        "candidates_per_call": candidates,
        "offered_payload_bytes": calls * list_bytes,
        "offered_candidate_rows": offered_rows,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": sampler.peak,
        "peak_rss_during_burst_bytes": peak_burst,
        "peak_minus_baseline_bytes": growth,
        "within_bound": growth <= bound,
        "growth_vs_bound": round(growth / bound, 3),
        "rss_samples": sampler.samples,
        "peak_writer_buffered_bytes": sampler.peak_buffered,
        "writer_buffer_limit_bytes": after.get("buffer_limit_bytes"),
        "writer_peak_held_bytes": after.get("peak_buffered_bytes"),
        "rss_after_flush_bytes": residual,
        "arrow_pool": pool.backend_name,
        "arrow_peak_allocated_bytes": pool.max_memory(),
        "arrow_allocated_before_bytes": arrow_before,
        "arrow_allocated_after_bytes": pool.bytes_allocated(),
        "burst_s": round(burst_s, 2),
        "flush_s": round(flush_s, 2),
        "flush_ok": flushed,
        "records_dropped": dropped,
        "dropped_by_reason": after["dropped"],
        "candidate_rows_recorded": recorded,
        "candidate_rows_written": after["rows_written"].get("candidates", 0)
        - before["rows_written"].get("candidates", 0),
        "rss_source": _rss_source(),
    }


def _rss_source() -> str:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return "/proc/self/statm"
    return "psutil"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bound-mib", type=float, default=64.0)
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--root", default=None, help="lake root (default: a temp folder)")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    if args.bound_mib < 0.25 or args.factor <= 0 or args.candidates < 1:
        parser.error("--bound-mib must be >= 0.25, --factor and --candidates positive")
    with tempfile.TemporaryDirectory(prefix="xray-bench-mem-") as tmp:
        os.environ.setdefault("XRAY_LAKE_SPOOL", os.path.join(tmp, "spool"))
        xr.configure(spool_dir=os.environ["XRAY_LAKE_SPOOL"])
        result = burst(args.root or os.path.join(tmp, "lake"), int(args.bound_mib * 2**20),
                       args.factor, args.candidates)
    text = json.dumps(result, indent=2)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
