"""The markdown report of one `run.py` run, saved as a dated file under benchmarks/results/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import mib

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENGINE_ORDER = ("xray-lake", "xray-lake (compacted)", "jsonl_duckdb", "sqlite", "postgres")
ENGINE_TITLES = {
    "xray-lake": "xray-lake (as written)",
    "xray-lake (compacted)": "xray-lake (compacted)",
    "jsonl_duckdb": "(a) JSON-lines + DuckDB read_json",
    "sqlite": "(c) SQLite JSON",
    "postgres": "(b) PostgreSQL JSONB",
}


def _met(flag: bool) -> str:
    return "**met**" if flag else "**not met**"


def _loads(values: Any) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def header(r: dict[str, Any]) -> list[str]:
    p, m = r["params"], r["machine"]
    return [
        "",
        f"## Benchmark suite, scale {r['scale']}: {p['runs']:,} runs x {p['candidates']} "
        f"candidates ({r['date']})",
        "",
        f"`{r['command']}` ({r['seconds']:,.0f} s in all)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, shared with other "
        f"jobs; load average (1/5/15 min) {_loads(r['loadavg_start'])} at the start, "
        f"{_loads(r['loadavg_end'])} at the end. Read ratios within this run; absolute times "
        "move with the load. "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".",
    ]


def hot_path(x: dict[str, Any]) -> list[str]:
    rows = [
        ("uninstrumented filter over the list", f"{x['uninstrumented_us']:,.0f} µs"),
        ("one `orjson.dumps` of the list", f"{x['orjson_dumps_us']:,.0f} µs"),
    ]
    for mode in ("freeze", "reference"):
        for state in ("worker_idle", "worker_running"):
            us = x[f"caller_overhead_{mode}_{state}_us"]
            ratio = x[f"caller_overhead_{mode}_{state}_vs_orjson"]
            rows.append((f"caller overhead, {mode}, {state.replace('_', ' ')}",
                         f"{us:,.0f} µs = {ratio}x orjson"))
    rows += [
        ("total CPU overhead per call (caller + writer, flush included)",
         f"{x['total_overhead_cpu_us']:,.0f} µs = {x['total_overhead_vs_orjson']}x orjson"),
        ("end to end", f"{x['end_to_end_candidate_rows_per_s']:,} candidate rows/s"),
    ]
    return ["", f"### Hot path: a filtering stage over {x['candidates']:,} product dicts "
            f"(~{x['bytes_per_candidate']:.0f} B of JSON each)", "",
            f"`{x['command']}`; medians of CPU time (method: benchmarks/hot_path.py).",
            "", "| measure | value |", "| --- | ---: |",
            *(f"| {a} | {b} |" for a, b in rows)]


def ingest(x: dict[str, Any]) -> list[str]:
    sdk, d = x["sdk"], x["direct"]
    return [
        "", "### Ingest: the SDK against pyarrow writing the same rows", "",
        "| writer | candidate rows | seconds | candidate rows/s | bytes per candidate row | "
        "SDK rows/s as % of it |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| SDK: {sdk['runs']:,} runs x 5 stages x ~{sdk['candidates_per_stage']} candidates, "
        f"flush included | {sdk['candidate_rows']:,} | {sdk['seconds']:,.1f} | "
        f"{sdk['rows_per_s']:,} | {sdk['bytes_per_candidate_row']:,} "
        f"({sdk['bytes_total_per_candidate_row']:,} with runs and stages) | |",
        f"| pyarrow `write_parquet`, JSON already encoded (i) | {d['candidate_rows']:,} | "
        f"{d['encoded_s']:,.2f} | {d['encoded_rows_per_s']:,} | "
        f"{d['encoded_bytes'] / max(d['candidate_rows'], 1):,.2f} (all tables) | "
        f"{x['sdk_pct_of_encoded']}% |",
        f"| pyarrow from Python dicts, orjson encoding included (ii) | {d['candidate_rows']:,} | "
        f"{d['dicts_s']:,.2f} | {d['dicts_rows_per_s']:,} | same files as (i) | "
        f"{x['sdk_pct_of_dicts']}% |",
        *([f"| SDK's own time: the build minus the pipeline run with recording off "
           f"({x['pipeline_alone_s']:,.2f} s) | {sdk['candidate_rows']:,} | "
           f"{sdk['seconds'] - x['pipeline_alone_s']:,.1f} | {x['sdk_only_rows_per_s']:,} | "
           f"| {x['sdk_only_pct_of_encoded']}% of (i), {x['sdk_only_pct_of_dicts']}% of (ii) |"]
          if "sdk_only_rows_per_s" in x else []),
        "",
        f"Target: SDK >= {x['target_pct']:.0f}% of a direct write: {_met(x['target_met_vs_encoded'])}"
        f" against (i), {_met(x['target_met_vs_dicts'])} against (ii). The SDK figure is the "
        "wall time of the whole build in one process: the pipeline's own code, the caller-side "
        f"snapshot, the writer thread, {sdk['throttled_s']:,.1f} s of the driver waiting for "
        "the writer (the SDK drops rather than blocks past max_buffer_bytes, so the driver "
        f"slows down), the final flush; {sdk['records_dropped']} records dropped. The direct "
        f"writes rewrite {d['partitions']} whole partitions ({d['files']} SDK files: runs, "
        "stages and candidates, one output file each, same schema, zstd level "
        f"{x['compression_level']}, same dictionary columns, no fsync on either side).",
    ]


def queries_(x: dict[str, Any]) -> list[str]:
    c = x.get("compaction", {})
    before, after = x.get("before", []), {t["key"]: t for t in x.get("after", [])}
    cli = any(t.get("cli_ms") is not None for t in before)
    lines = ["", "### Canonical questions, before and after compaction", ""]
    rows = x.get("lake_rows", {})
    if rows:
        lines.append(f"Lake: {rows.get('runs', 0):,} runs, {rows.get('stages', 0):,} stages, "
                     f"{rows.get('candidates', 0):,} candidate rows.")
    if c:
        lines.append(f"`xr.compact(root, before=tomorrow)`: {c['files_in']:,} files -> "
                     f"{c['files_out']:,} in {c['seconds']:,.1f} s, {mib(c['bytes_in'])} -> "
                     f"{mib(c['bytes_out'])}" + (f"; errors: {c['errors']}" if c["errors"] else "")
                     + ".")
    lines += ["", "Medians in ms; cold: a fresh `xr.Lake` and its first query; warm: same Lake "
              "after a warm-up" + ("; CLI: the command in a subprocess." if cli else "."), ""]
    head = "| # | question | rows | cold | warm | cold compacted | warm compacted |"
    rule = "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    if cli:
        head += " CLI | CLI compacted |"
        rule += " ---: | ---: |"
    lines += [head, rule]
    for t in before:
        a = after.get(t["key"], {})
        row = (f"| {t['key']} | {t['title']} | {t['rows']:,} | {t['cold_ms']:,.1f} | "
               f"{t['warm_ms']:,.1f} | {a.get('cold_ms', float('nan')):,.1f} | "
               f"{a.get('warm_ms', float('nan')):,.1f} |")
        if cli:
            row += f" {t['cli_ms'] or 0:,.0f} | {a.get('cli_ms') or 0:,.0f} |"
        lines.append(row)
    return lines


def alternatives(x: dict[str, Any]) -> list[str]:
    engines = x["engines"]
    names = [n for n in ENGINE_ORDER if n in engines]
    base = engines.get("xray-lake (compacted)", engines["xray-lake"])
    exp = x["export"]
    lines = [
        "", "### Alternatives: what users would pick instead: same data, same questions", "",
        f"Model: {x['model']}; {exp['runs']:,} pipeline documents, {exp['stages']:,} stage "
        f"documents holding {exp['candidates']:,} candidates (exported from the lake in "
        f"{exp['seconds']:,.1f} s). Question 3 from {x['params']['since']}; question 4: "
        f"candidate {x['params']['candidate_id']} of run {x['params']['run_id']}.",
        "",
        "| engine | bytes on disk | x xray-lake (compacted) | load | runs / stages / candidates |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for name in names:
        e = engines[name]
        if not e.get("available"):
            lines.append(f"| {ENGINE_TITLES[name]} | - | - | {e.get('notice', '')} | - |")
            continue
        load = e.get("load", {})
        if "copy_s" in load:
            how = (f"COPY {load['copy_s']:,.1f} s + indexes {load['index_s']:,.1f} s "
                   f"(tables {mib(load['bytes_tables'])}, indexes {mib(load['bytes_indexes'])})")
        elif "insert_s" in load:
            how = f"insert {load['insert_s']:,.1f} s + indexes {load['index_s']:,.1f} s"
        elif name == "jsonl_duckdb":
            how = "none (files read in place)"
        else:
            how = "written by the SDK" + (" then compacted" if "compacted" in name else "")
        c = e["counts"]
        lines.append(f"| {ENGINE_TITLES[name]} | {mib(e['bytes'])} | "
                     f"{e['bytes'] / max(base['bytes'], 1):,.1f} | {how} | "
                     f"{c['runs']:,} / {c['stages']:,} / {c['candidates']:,} |")
    lines += ["", "Warm medians in ms (first call in parentheses; one call only when it "
              "took longer than the budget); every answer was compared with xray-lake's as "
              "written (the reference): ✓ equal, ✗ different. xray-lake answers question 1 "
              "with the typed builder asking for the four columns the others return "
              "(`lake.find`, with every column, is question 1 of the canonical questions).", "",
              "| question | " + " | ".join(ENGINE_TITLES[n] for n in names) + " |",
              "| --- |" + " ---: |" * len(names)]
    for key, title in x["questions"].items():
        cells = []
        for name in names:
            e = engines[name]
            if not e.get("available"):
                cells.append("-")
                continue
            q = e["questions"][key]
            mark = {True: " ✓", False: " ✗", None: ""}[q.get("matches_xray_lake")]
            cells.append(f"{q['median_ms']:,.1f} ({q['first_ms']:,.1f}){mark}")
        lines.append(f"| {key}. {title} | " + " | ".join(cells) + " |")
    h = x.get("headline", {})
    lines.append("")
    if "notice" in h:
        lines.append(f"Headline against PostgreSQL: not measured: {h['notice']}.")
    for name in ("xray-lake", "xray-lake (compacted)"):
        if name in h:
            v = h[name]
            lake_ms = engines[name]["questions"]["1"]["median_ms"]
            pg_ms = engines["postgres"]["questions"]["1"]["median_ms"]
            speed = pg_ms / max(lake_ms, 1e-6)
            said = (f"{speed:,.1f}x faster" if speed >= 1
                    else f"{lake_ms / max(pg_ms, 1e-6):,.1f}x slower")
            said += f" ({lake_ms:,.1f} ms against {pg_ms:,.1f} ms)"
            lines.append(
                f"Headline, {ENGINE_TITLES[name]} against PostgreSQL JSONB: on question 1 "
                f"xray-lake is {said}, a speed-up of {speed:,.3g}x (target >= "
                f"{h['speed_target']:.0f}x: {_met(v['speed_target_met'])}); PostgreSQL takes "
                f"{v['size_ratio_postgres_over_lake']:,.1f}x the bytes on disk (target >= "
                f"{h['size_target']:.0f}x: {_met(v['size_target_met'])})."
                + (f" With question 1 written as one jsonpath filter (`doc @? '$ ? (@.type == "
                   "\"filtering\" && @.metadata.failRatio > 0.9)'`, which the failRatio "
                   "expression index cannot serve), PostgreSQL takes "
                   f"{engines['postgres']['q1_jsonpath']['median_ms']:,.1f} ms: a speed-up "
                   f"of {engines['postgres']['q1_jsonpath']['median_ms'] / max(lake_ms, 1e-6):,.3g}x."
                   if "q1_speedup_vs_postgres_jsonpath" in v else "")
                + _gin_only(engines["postgres"], v, lake_ms, h["speed_target"]))
    return lines


def _gin_only(pg: dict[str, Any], v: dict[str, Any], lake_ms: float, target: float) -> str:
    """The headline's second figure: PostgreSQL as the issue's (b) specifies it (GIN only).

    Said after the figure against the stronger setup (GIN + btree expression indexes), never
    instead of it."""
    gin = pg.get("q1_gin_only")
    if not gin or "q1_speedup_vs_postgres_gin_only" not in v:
        return ""
    mark = "" if gin.get("matches_xray_lake", True) else " (its answer differs!)"
    return (f" As the issue specifies (b), GIN indexes only (jsonb_path_ops; the btree "
            f"expression indexes dropped) with question 1 as `doc @> '{{\"type\": "
            f"\"filtering\"}}'` plus the failRatio comparison, PostgreSQL takes "
            f"{gin['median_ms']:,.1f} ms{mark}: a speed-up of "
            f"{gin['median_ms'] / max(lake_ms, 1e-6):,.3g}x (target >= {target:.0f}x: "
            f"{_met(v['q1_speedup_vs_postgres_gin_only'] >= target)}); against the stronger "
            f"setup above it is {v['q1_speedup_vs_postgres']:,.3g}x.")


def memory(x: dict[str, Any]) -> list[str]:
    return [
        "", "### Memory: writer RSS under a burst", "",
        f"`{x['command']}`: {x['calls']} calls of a filtering stage over "
        f"{x['candidates_per_call']:,} product dicts back to back, "
        f"{mib(x['offered_payload_bytes'])} of candidate JSON offered in {x['burst_s']:.1f} s "
        f"with max_buffer_bytes = {mib(x['bound_bytes'])}; RSS sampled "
        f"{x['rss_samples']:,} times ({x['rss_source']}) until `xr.flush()` returned.",
        "",
        "| measure | value |", "| --- | ---: |",
        f"| baseline RSS (before the burst) | {mib(x['baseline_rss_bytes'])} |",
        f"| peak RSS | {mib(x['peak_rss_bytes'])} |",
        f"| peak - baseline | {mib(x['peak_minus_baseline_bytes'])} = "
        f"{x['growth_vs_bound']}x the bound ({'within' if x['within_bound'] else 'over'}) |",
        f"| peak of the writer's own count of buffered bytes | "
        f"{mib(x['peak_writer_buffered_bytes'])} |",
        f"| peak Arrow allocation ({x['arrow_pool']}) | "
        f"{mib(x['arrow_peak_allocated_bytes'])} |",
        f"| records dropped and counted (stage records + candidate rows) | "
        f"{x['records_dropped']:,} of {x['offered_candidate_rows'] + x['calls']:,} offered |",
        f"| candidate rows recorded / written | {x['candidate_rows_recorded']:,} / "
        f"{x['candidate_rows_written']:,} |",
    ]


def markdown(r: dict[str, Any]) -> str:
    w = r["workloads"]
    lines = header(r)
    for key, render in (("hot_path", hot_path), ("ingest", ingest), ("queries", queries_), ("alternatives", alternatives), ("memory", memory)):
        if key in w:
            lines += render(w[key])
    return "\n".join(lines) + "\n"


def save(result: dict[str, Any]) -> Path:
    """Write the run's report to its own dated file (never edited afterwards) and return it."""
    stamp = str(result["date"])[:16].replace(":", "").replace("T", "-")
    path = RESULTS_DIR / f"{stamp}-suite-{result['scale']}.md"
    RESULTS_DIR.mkdir(exist_ok=True)
    path.write_text(markdown(result).lstrip("\n"), encoding="utf-8")
    return path
