"""Burst: N runs recorded back to back with default settings. Does every record land, at what cost?

Run: python benchmarks/burst.py [--runs 2000] [--candidates 200] [--repeat 3] [--load]

Each mode runs in a fresh process (so its peak RSS is its own), `--repeat` times, A B C A B C:
  * ``xray``: the pipeline decorated with xray-lake, default settings, then ``xr.flush()``;
  * ``xray-thread``: the same with ``writer="thread"`` (the writer on a thread of the app);
  * ``jsonl``: the same pipeline writing one ``orjson.dumps`` line per stage into a buffered
    file, fsync at the end (the "log JSON lines and query them later" baseline);
  * ``off``: the pipeline with no recording at all.

Pipeline per run: retrieval (K candidates) -> filtering with reason labels (drops > 90% in about
10% of runs, ~30% otherwise) -> scoring -> top-10 ranking.

Reported per mode (medians): loop seconds, caller overhead per run (loop minus ``off``'s loop),
time to durable (loop + flush), peak RSS of the application process and of its children (the
writer process, if any), candidate rows per second to durable, and what landed: runs, stages and
candidate rows counted in the lake (or in the JSONL file) against what was recorded.
``--load`` runs a CPU-bound process beside the benchmark (a busy laptop).
"""



import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("xray", "xray-thread", "jsonl", "off")
# xray-thread: the same pipeline with writer="thread" (the writer on a thread of the app)
HEAVY_SHARE = 0.1
TOPK = 10


def _pipeline(mode: str, root: str) -> tuple[Any, Any]:
    """The four-stage pipeline for `mode`; returns (run_one, finish)."""
    if mode == "xray":
        from typing import Annotated

        import xray_lake as xr

        xr.configure(root=root)

        @xr.retrieval_stage("search", id="id")
        def search(pool: list[dict[str, Any]], k: int, offset: int) -> list[dict[str, Any]]:
            return [dict(pool[(offset + i) % len(pool)]) for i in range(k)]

        @xr.filtering_stage("price-filter", id="id", passed="passed", reason_label="reason")
        def price_filter(items: Annotated[list[dict[str, Any]], xr.Candidates()],
                         cutoff: float) -> list[dict[str, Any]]:
            for it in items:
                ok = it["price"] < cutoff
                it["passed"] = ok
                it["reason"] = None if ok else "too_expensive"
            return items

        @xr.scoring_stage("relevance", id="id", score="score")
        def score(items: Annotated[list[dict[str, Any]], xr.Candidates()]) -> list[dict[str, Any]]:
            return [{**it, "score": it["price"] * 0.001 + it["rating"]} for it in items]

        @xr.ranking_stage("top10", id="id")
        def rank(items: Annotated[list[dict[str, Any]], xr.Candidates()]) -> list[dict[str, Any]]:
            return sorted(items, key=lambda it: -it["score"])[:TOPK]

        @xr.pipeline("burst")
        def run_one(i: int, pool: list[dict[str, Any]], k: int, cutoff: float) -> Any:
            found = search(pool, k, i * 7)
            kept = [it for it in price_filter(found, cutoff) if it["passed"]]
            return rank(score(kept))

        def finish() -> dict[str, Any]:
            ok = xr.flush()
            stats = xr.stats()
            return {"flush_ok": ok, "stats": stats, "writer_rss": _peak_rss(stats.get("writer_pid"))}

        return run_one, finish

    if mode == "jsonl":
        import orjson

        os.makedirs(root, exist_ok=True)
        fh = open(os.path.join(root, "stages.jsonl"), "wb", buffering=1 << 20)  # noqa: SIM115

        def log(run_id: str, name: str, items: list[dict[str, Any]]) -> None:
            fh.write(orjson.dumps({"run_id": run_id, "stage": name, "candidates": items}))
            fh.write(b"\n")

        def run_one(i: int, pool: list[dict[str, Any]], k: int, cutoff: float) -> Any:
            rid = f"r{i}"
            found = [dict(pool[(i * 7 + j) % len(pool)]) for j in range(k)]
            log(rid, "search", found)
            for it in found:
                ok = it["price"] < cutoff
                it["passed"] = ok
                it["reason"] = None if ok else "too_expensive"
            log(rid, "price-filter", found)
            scored = [{**it, "score": it["price"] * 0.001 + it["rating"]} for it in found
                      if it["passed"]]
            log(rid, "relevance", scored)
            top = sorted(scored, key=lambda it: -it["score"])[:TOPK]
            log(rid, "top10", top)
            return top

        def finish() -> dict[str, Any]:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            return {"flush_ok": True}

        return run_one, finish

    def run_one(i: int, pool: list[dict[str, Any]], k: int, cutoff: float) -> Any:
        found = [dict(pool[(i * 7 + j) % len(pool)]) for j in range(k)]
        for it in found:
            ok = it["price"] < cutoff
            it["passed"] = ok
            it["reason"] = None if ok else "too_expensive"
        scored = [{**it, "score": it["price"] * 0.001 + it["rating"]} for it in found
                  if it["passed"]]
        return sorted(scored, key=lambda it: -it["score"])[:TOPK]

    return run_one, lambda: {"flush_ok": True}


def _peak_rss(pid: int | None) -> int:
    """Peak RSS of a live process (the writer process, still running), in bytes; 0 if none."""
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child(mode: str, root: str, runs: int, k: int) -> None:
    """One measured process: build the pipeline, run the burst, print one JSON line."""
    rng = random.Random(7)
    pool = [{"id": f"sku-{j}", "title": f"product {j}", "price": rng.uniform(1, 1000),
             "rating": rng.uniform(0, 5), "brand": f"b{j % 40}"} for j in range(20_000)]
    cutoffs = [50.0 if rng.random() < HEAVY_SHARE else 700.0 for _ in range(runs)]
    t_import = time.perf_counter()
    run_one, finish = _pipeline("xray" if mode.startswith("xray") else mode, root)
    import_s = time.perf_counter() - t_import
    t0 = time.perf_counter()
    n_candidates = 0
    for i in range(runs):
        out = run_one(i, pool, k, cutoffs[i])
        n_candidates += len(out)
    loop_s = time.perf_counter() - t0
    result = finish()
    durable_s = time.perf_counter() - t0
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child_rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                    result.pop("writer_rss", 0))
    stats = result.pop("stats", {})
    print(json.dumps({"mode": mode, "import_s": import_s, "loop_s": loop_s,
                      "durable_s": durable_s, "rss": self_rss, "child_rss": child_rss,
                      "flush_ok": result["flush_ok"],
                      "dropped": stats.get("dropped_total", 0)}))


def expected(runs: int, k: int) -> dict[str, int]:
    """What the burst records, from the pipeline's own arithmetic (the child's random draws)."""
    rng = random.Random(7)
    prices = []
    for _ in range(20_000):
        prices.append(rng.uniform(1, 1000))
        rng.uniform(0, 5)  # the rating
    cutoffs = [50.0 if rng.random() < HEAVY_SHARE else 700.0 for _ in range(runs)]
    cand = 0
    for i in range(runs):
        passed = sum(prices[(i * 7 + j) % len(prices)] < cutoffs[i] for j in range(k))
        # one row per candidate: retrieval k, filtering k (each with its verdict),
        # scoring `passed`, ranking `passed` (its input; the top 10 have an out_position)
        cand += 2 * k + 2 * passed
    return {"runs": runs, "stages": 4 * runs, "candidates": cand}


def landed(mode: str, root: str) -> dict[str, int]:
    if mode.startswith("xray"):
        import duckdb

        con = duckdb.connect()
        out = {}
        for table in ("runs", "stages", "candidates"):
            files = list(Path(root, table).rglob("*.parquet"))
            out[table] = 0 if not files else con.execute(
                f"select count(*) from read_parquet('{root}/{table}/**/*.parquet')").fetchone()[0]
        return out
    if mode == "jsonl":
        path = Path(root, "stages.jsonl")
        import orjson

        stages = cand = 0
        run_ids = set()
        with path.open("rb") as fh:
            for line in fh:
                rec = orjson.loads(line)
                stages += 1
                cand += len(rec["candidates"])
                run_ids.add(rec["run_id"])
        return {"runs": len(run_ids), "stages": stages, "candidates": cand}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--load", action="store_true", help="a CPU-bound process runs beside")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.runs, args.candidates)
        return
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    try:
        for _ in range(args.repeat):
            for mode in modes:
                root = tempfile.mkdtemp(prefix=f"xray-burst-{mode}-")
                env = {**os.environ, "XRAY_LAKE_SPOOL": os.path.join(root, "_spool"),
                       "XRAY_LAKE_WRITER": "thread" if mode == "xray-thread" else "process"}
                try:
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", mode, "--root", root,
                         "--runs", str(args.runs), "--candidates", str(args.candidates)],
                        capture_output=True, text=True, env=env, check=True)
                    fig = json.loads(out.stdout.strip().splitlines()[-1])
                    fig["landed"] = landed(mode, root)
                    if out.stderr.strip():
                        fig["stderr"] = out.stderr.strip()[-500:]
                    results[mode].append(fig)
                    print(json.dumps(fig), file=sys.stderr)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    want = expected(args.runs, args.candidates)
    off_loop = statistics.median(r["loop_s"] for r in results["off"]) if "off" in results else 0.0
    summary: dict[str, Any] = {"runs": args.runs, "candidates": args.candidates,
                               "load": args.load, "expected": want, "modes": {}}
    print(f"burst: {args.runs} runs x 4 stages x {args.candidates} candidates; expected rows "
          f"{want}; medians of {args.repeat}{' under load' if args.load else ''}")
    print(f"{'mode':6} {'loop s':>7} {'overhead/run':>13} {'durable s':>9} {'rows/s':>10} "
          f"{'app RSS':>8} {'child RSS':>9}  landed")
    for mode in modes:
        rs = results[mode]
        med = {key: statistics.median(r[key] for r in rs)
               for key in ("loop_s", "durable_s", "rss", "child_rss", "import_s")}
        over = (med["loop_s"] - off_loop) / args.runs * 1e6
        rows_s = want["candidates"] / med["durable_s"] if mode != "off" else 0
        land = [r["landed"] for r in rs]
        summary["modes"][mode] = {**med, "overhead_us_per_run": over, "rows_per_s": rows_s,
                                  "landed": land, "flush_ok": [r["flush_ok"] for r in rs],
                                  "dropped": [r["dropped"] for r in rs]}
        print(f"{mode:6} {med['loop_s']:7.2f} {over:10.0f} µs {med['durable_s']:9.2f} "
              f"{rows_s:10,.0f} {med['rss'] / 2**20:6.0f}MB {med['child_rss'] / 2**20:7.0f}MB  "
              f"{land[-1] if land else ''}")
    if "xray" in modes and "jsonl" in modes:
        x, j = summary["modes"]["xray"], summary["modes"]["jsonl"]
        ratio_over = x["overhead_us_per_run"] / max(j["overhead_us_per_run"], 1e-9)
        ratio_durable = x["durable_s"] / j["durable_s"]
        summary["overhead_ratio_vs_jsonl"] = ratio_over
        summary["durable_ratio_vs_jsonl"] = ratio_durable
        print(f"xray vs jsonl: caller overhead {ratio_over:.2f}x, time to durable "
              f"{ratio_durable:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
