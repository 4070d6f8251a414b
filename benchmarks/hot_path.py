"""Hot path: what a filtering stage over 5,000 product dicts costs the caller, and in total.

Run: python benchmarks/hot_path.py [--candidates 5000] [--calls 200] [--json PATH]

Default snapshot mode ("freeze") and the opt-in "reference" mode are both measured.
Reports medians (µs per call) of: the uninstrumented stage, the instrumented stage on the
caller's thread (CPU time of the calling thread, `time.thread_time`, with the writer running
as in production), its wall time (what the pipeline waits, GIL waits included), one
orjson.dumps of the same list, and the total CPU per call including the background encode
and Parquet write (process CPU time, flush included; with writer="process" that is the
application's share only).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from typing import Annotated, Any

import orjson
from _common import report  # beside this script

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


def cpu_us(fn: Any, arg: Any, calls: int, pause_s: float,
           wall: list[float] | None = None) -> list[float]:
    """CPU time of the calling thread per call, µs (other threads' work is not counted);
    wall-clock µs per call are appended to `wall` when given."""
    times = []
    for _ in range(calls):
        w0 = time.perf_counter()
        t0 = time.thread_time()
        fn(arg)
        times.append((time.thread_time() - t0) * 1e6)
        if wall is not None:
            wall.append((time.perf_counter() - w0) * 1e6)
        if pause_s:
            time.sleep(pause_s)  # a pipeline does other work between stage calls
    return times


def interleaved(products: list[dict[str, Any]], tmp: str, rounds: int, calls: int,
                worker_running: bool) -> dict[str, float]:
    """Medians over `rounds` rounds, each timing every variant for `calls` calls, so load
    changes on a shared machine hit all variants alike."""
    samples: dict[str, list[float]] = {"plain": [], "freeze": [], "reference": [], "orjson": [],
                                       "plain_wall": [], "freeze_wall": [],
                                       "reference_wall": [], "orjson_wall": []}
    drain = 0.5 if worker_running else 60.0  # 60 s: the worker sleeps through the timing
    for r in range(rounds):
        samples["plain"] += cpu_us(plain_filter, products, calls, 0.002, samples["plain_wall"])
        samples["orjson"] += cpu_us(orjson.dumps, products, calls, 0.002,
                                    samples["orjson_wall"])
        for mode in ("freeze", "reference"):
            xr.configure(root=f"{tmp}/lake-{mode}-{worker_running}-{r}", snapshot=mode,
                         drain_interval_s=drain, flush_interval_s=3600 if not worker_running
                         else 10.0, max_buffer_bytes=8 * 1024**3)
            samples[mode] += cpu_us(instrumented_filter, products, calls, 0.002,
                                    samples[f"{mode}_wall"])
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    products = make_products(args.candidates)
    payload_bytes = len(orjson.dumps(products)) / len(products)
    with tempfile.TemporaryDirectory() as tmp:
        big = 8 * 1024**3  # no drops while we measure: the worker may lag behind the loop
        xr.configure(root=f"{tmp}/warm", max_buffer_bytes=big)
        with xr.run("bench"):
            instrumented_filter(products)  # warm-up
        idle = interleaved(products, tmp, args.rounds, args.calls // args.rounds, False)
        busy = interleaved(products, tmp, args.rounds, args.calls // args.rounds, True)
        xr.flush()

        # Total CPU: caller + background encode + Parquet write, flush included.
        xr.configure(root=f"{tmp}/total", max_buffer_bytes=big, snapshot="freeze")
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

    encode = idle["orjson"]
    result: dict[str, Any] = {
        "candidates": args.candidates,
        "bytes_per_candidate": round(payload_bytes, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "uninstrumented_us": round(idle["plain"], 1),
        "orjson_dumps_us": round(encode, 1),
    }
    for name, m in (("worker_idle", idle), ("worker_running", busy)):
        for mode in ("freeze", "reference"):
            overhead = m[mode] - m["plain"]
            result[f"caller_overhead_{mode}_{name}_us"] = round(overhead, 1)
            result[f"caller_overhead_{mode}_{name}_vs_orjson"] = round(overhead / m["orjson"], 3)
            wall = m[f"{mode}_wall"] - m["plain_wall"]
            result[f"caller_wall_{mode}_{name}_us"] = round(wall, 1)
            result[f"caller_wall_{mode}_{name}_vs_orjson"] = round(wall / m["orjson_wall"], 3)
    total_overhead = total_cpu - plain_cpu
    result.update({
        "total_overhead_cpu_us": round(total_overhead, 1),
        "total_overhead_vs_orjson": round(total_overhead / encode, 3),
        "end_to_end_candidate_rows_per_s": round(rows_per_s),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "xray_lake": xr.__version__,
    })
    report(result, args.json_path, width=28)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
