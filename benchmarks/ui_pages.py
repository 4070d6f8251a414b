"""Server time of each page of `xray-lake ui` on a large lake (target: <= 300 ms at 100k runs).

Run:
    python benchmarks/ui_pages.py --root LAKE [--repeat 5] [--runs N --candidates K]

LAKE is a lake built by `benchmarks/queries.py` (e.g. /tmp/xray-bench-100000x50); a root with
no data is built first the same way (`--runs`, `--candidates`), which takes ~20 min at 100k
runs. The web view is served as `xray-lake ui` serves it (uvicorn, one read-only `xr.Lake`)
on 127.0.0.1, and each page is requested over HTTP:
  * first: the first request of each page to a freshly started server (DuckDB's cold state;
    the OS page cache is warm);
  * warm: the median of `--repeat` requests after that one.
Server time is the page's `Server-Timing` header (the handler's queries and the template);
wall time adds HTTP on loopback. Prints a table and writes a dated report to
benchmarks/results/ (unless --no-results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import xray_lake as xr

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
TARGET_MS = 300.0


@dataclass(frozen=True, slots=True)
class Timing:
    page: str
    url: str
    status: int
    first_server_ms: float
    first_wall_ms: float
    warm_server_ms: float
    warm_wall_ms: float
    warm_max_server_ms: float


def sample(root: str) -> dict[str, str]:
    """Ids the pages need: a run whose filter dropped > 90%, that filter, a scoring stage of
    the same run, a candidate the filter dropped, and the busiest label."""
    with xr.Lake(root) as lake:
        run_id, label, filt = lake.sql(
            "select run_id, label, stage_id from stages where type = 'filtering' "
            "and fail_ratio > 0.9 order by run_id limit 1").row(0)
        scoring = lake.sql("select stage_id from stages where run_id = ? and type = 'scoring' "
                           "limit 1", [run_id])
        dropped = lake.sql("select candidate_id from candidates where run_id = ? and "
                           "stage_id = ? and passed = false limit 1", [run_id, filt])
        runs = int(lake.sql("select count(*) from runs").item(0, 0))
    return {"run": run_id, "label": label, "filter": filt,
            "scoring": scoring.item(0, 0) if scoring.height else filt,
            "candidate": dropped.item(0, 0), "runs": str(runs)}


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    run, label = ids["run"], ids["label"]

    def stage(stage_id: str, **extra: str) -> str:
        return "/stage?" + urlencode({"run": run, "stage": stage_id, **extra})

    last = max(1, int(ids["runs"]) // 50)
    return [
        ("runs: newest", "/runs"),
        ("runs: page 1,000 (offset 49,950)", "/runs?page=1000"),
        (f"runs: last page ({last:,})", f"/runs?page={last}"),
        ("runs: sorted by duration", "/runs?sort=duration_ms&dir=desc"),
        ("runs: label + status + since", "/runs?" + urlencode(
            {"label": label, "status": "success", "since": "7d"})),
        ("runs: saved view (filter dropped > 90%)", "/runs?view=heavy-drop"),
        ("run: funnel", "/run?" + urlencode({"run": run})),
        ("stage: filter's candidates", stage(ids["filter"])),
        ("stage: failed, one reason, page 2", stage(ids["filter"], show="failed", page="2")),
        ("stage: scoring, by score + histogram", stage(ids["scoring"], sort="score",
                                                       dir="desc")),
        ("candidate: journey", "/candidate?" + urlencode({"run": run,
                                                          "candidate": ids["candidate"]})),
        ("trends: one label, 14 days", "/trends?" + urlencode({"label": label,
                                                               "since": "14d"})),
        ("sql: headline count", "/sql?" + urlencode({"q": "select count(distinct run_id) "
                                                     "from stages where type = 'filtering' "
                                                     "and fail_ratio > 0.9"})),
    ]


def fetch(port: int, url: str) -> tuple[int, float, float]:
    """(status, server ms from Server-Timing, wall ms) of one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", url)
    response = conn.getresponse()
    response.read()
    wall = (time.perf_counter() - t0) * 1000
    conn.close()
    header = response.getheader("Server-Timing") or "app;dur=nan"
    return response.status, float(header.partition("dur=")[2]), wall


def serve(root: str) -> tuple[int, threading.Thread, object]:
    import uvicorn

    from xray_lake.ui.app import LOOPBACK_HOSTS, create_app
    from xray_lake.ui.serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(root, allowed_hosts=list(LOOPBACK_HOSTS)),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return int(sock.getsockname()[1]), thread, server


def measure(root: str, repeat: int) -> list[Timing]:
    port, thread, server = serve(root)
    found = sample(root)
    listed = pages(found)
    try:
        first = [fetch(port, url) for _name, url in listed]
        timings = []
        for (name, url), (status, s0, w0) in zip(listed, first, strict=True):
            warm = [fetch(port, url) for _ in range(repeat)]
            timings.append(Timing(name, url, status, s0, w0,
                                  statistics.median(s for _st, s, _w in warm),
                                  statistics.median(w for _st, _s, w in warm),
                                  max(s for _st, s, _w in warm)))
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(30)
    return timings


def lake_size(root: str) -> dict[str, int]:
    with xr.Lake(root) as lake:
        return {t: int(lake.sql(f"select count(*) from {t}").item(0, 0))
                for t in ("runs", "stages", "candidates")}


def table(timings: list[Timing]) -> str:
    lines = ["| page | status | first: server / wall ms | warm median: server / wall ms "
             "| warm max server ms |", "| --- | --- | --- | --- | --- |"]
    for t in timings:
        lines.append(f"| {t.page} | {t.status} | {t.first_server_ms:,.1f} / "
                     f"{t.first_wall_ms:,.1f} | {t.warm_server_ms:,.1f} / {t.warm_wall_ms:,.1f}"
                     f" | {t.warm_max_server_ms:,.1f} |")
    return "\n".join(lines)


def report(command: str, root: str, size: dict[str, int], timings: list[Timing],
           load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    worst = max(t.warm_server_ms for t in timings)
    worst_first = max(t.first_server_ms for t in timings)
    verdict = "within" if worst <= TARGET_MS else "over"
    return (
        f"# `xray-lake ui`: server time per page ({dt.date.today().isoformat()})\n\n"
        f"`{command}`\n\n"
        f"Lake: {size['runs']:,} runs, {size['stages']:,} stages, {size['candidates']:,} "
        f"candidate rows ({root}). Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average {load[0][0]:.2f} before, "
        f"{load[1][0]:.2f} after.\n\n"
        "Server time is each response's `Server-Timing` (the handler's queries and the "
        "template); wall adds HTTP on loopback. *First* is the first request of each page to a "
        "freshly started server, *warm* the median of the requests after it.\n\n"
        + table(timings) + "\n\n"
        f"Slowest warm page: {worst:,.1f} ms, {verdict} the {TARGET_MS:.0f} ms target; slowest "
        f"first request: {worst_first:,.1f} ms.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", required=True, help="a lake built by benchmarks/queries.py")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100_000, help="to build a missing lake")
    parser.add_argument("--candidates", type=int, default=50, help="to build a missing lake")
    parser.add_argument("--no-results", action="store_true",
                        help="do not write a report to benchmarks/results/")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from queries import build, has_data

    if not has_data(args.root):
        from rich.console import Console

        build(args.root, args.runs, args.candidates, Console(stderr=True))
        xr.flush()
    load_before = os.getloadavg()
    timings = measure(args.root, args.repeat)
    load_after = os.getloadavg()
    command = f"python benchmarks/ui_pages.py --root {shlex.quote(args.root)}"
    if args.repeat != 5:
        command += f" --repeat {args.repeat}"
    text = report(command, args.root, lake_size(args.root), timings, (load_before, load_after))
    print(text)
    if not args.no_results:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = dt.datetime.now().strftime("%Y-%m-%d-%H%M") + "-ui-pages.md"
        (RESULTS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote benchmarks/results/{name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
