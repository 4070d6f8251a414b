"""W1 hot path: what a filtering stage over 5,000 product dicts costs the caller, and in total.

Run: python benchmarks/hot_path.py [--candidates 5000] [--calls 200] [--json PATH]

Default snapshot mode ("freeze") and the opt-in "reference" mode are both measured.
Reports medians (µs per call) of: the uninstrumented stage, the instrumented stage on the
caller's thread (CPU time of the calling thread, `time.thread_time`, with the background writer
running as in production), one orjson.dumps of the same list, and the total CPU per call
including the background encode and Parquet write (process CPU time, flush included).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from typing import Annotated, Any

import orjson

import xray_lake as xr


def make_products(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    brands = ["acme", "zeta", "nova", "orbit", "lumen"]
    return [
        {
            "id": f"p-{i:06d}",
            "title": f"{rng.choice(brands).title()} running shoe model {i} in mesh",
            "brand": rng.choice(brands),
            "category": rng.choice(["shoes", "boots", "sandals"]),
            "colour": rng.choice(["black", "white", "red", "blue"]),
            "price": round(rng.uniform(10, 300), 2),
            "in_stock": rng.random() > 0.1,
            "rating": round(rng.uniform(1, 5), 1),
            "tags": rng.sample(["sale", "new", "eco", "wide", "vegan", "trail"], 3),
            "url": f"https://shop.example/p/{i:06d}/{rng.choice(brands)}-running-shoe",
        }
        for i in range(n)
    ]


def plain_filter(products: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in products if p["price"] < 100 and p["in_stock"]]


@xr.filtering_stage("price-filter", id="id")
def instrumented_filter(
    products: Annotated[list[dict[str, Any]], xr.Candidates()],
) -> list[dict[str, Any]]:
    return [p for p in products if p["price"] < 100 and p["in_stock"]]


def median_us(fn: Any, arg: Any, calls: int, pause_s: float = 0.0) -> float:
    """Median CPU time of the calling thread per call (other threads' work is not counted)."""
    times = []
    for _ in range(calls):
        t0 = time.thread_time()
        fn(arg)
        times.append(time.thread_time() - t0)
        if pause_s:
            time.sleep(pause_s)  # a pipeline does other work between stage calls
    return statistics.median(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    products = make_products(args.candidates)
    payload_bytes = len(orjson.dumps(products)) / len(products)
    with tempfile.TemporaryDirectory() as tmp:
        big = 8 * 1024**3  # no drops while we measure: the worker may lag behind the loop
        xr.configure(root=f"{tmp}/lake", max_buffer_bytes=big)
        with xr.run("bench"):
            instrumented_filter(products)  # warm-up
        uninstrumented = median_us(plain_filter, products, args.calls, 0.002)
        caller = median_us(instrumented_filter, products, args.calls, 0.002)
        encode = median_us(orjson.dumps, products, args.calls, 0.002)
        xr.configure(root=f"{tmp}/lake-ref", max_buffer_bytes=big, snapshot="reference")
        caller_ref = median_us(instrumented_filter, products, args.calls, 0.002)
        xr.flush()
        xr.flush()

        # Total CPU: caller + background encode + Parquet write, flush included.
        xr.configure(root=f"{tmp}/lake2", max_buffer_bytes=big)
        n_total = max(args.calls // 2, 20)
        t0 = time.process_time()
        w0 = time.perf_counter()
        for _ in range(n_total):
            instrumented_filter(products)
        assert xr.flush(300), "flush failed"
        total_cpu = (time.process_time() - t0) / n_total * 1e6
        rows_per_s = n_total * len(products) / (time.perf_counter() - w0)
        t0 = time.process_time()
        for _ in range(n_total):
            plain_filter(products)
        plain_cpu = (time.process_time() - t0) / n_total * 1e6

    overhead = caller - uninstrumented
    total_overhead = total_cpu - plain_cpu
    result = {
        "candidates": args.candidates,
        "bytes_per_candidate": round(payload_bytes, 1),
        "uninstrumented_us": round(uninstrumented, 1),
        "instrumented_caller_us": round(caller, 1),
        "caller_overhead_us": round(overhead, 1),
        "orjson_dumps_us": round(encode, 1),
        "caller_overhead_vs_orjson": round(overhead / encode, 3),
        "caller_overhead_reference_us": round(caller_ref - uninstrumented, 1),
        "caller_overhead_reference_vs_orjson": round((caller_ref - uninstrumented) / encode, 3),
        "total_cpu_us": round(total_cpu, 1),
        "total_overhead_cpu_us": round(total_overhead, 1),
        "total_overhead_vs_orjson": round(total_overhead / encode, 3),
        "end_to_end_candidate_rows_per_s": round(rows_per_s),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "xray_lake": xr.__version__,
    }
    for key, value in result.items():
        print(f"{key:28s} {value}")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
