"""The writer's own cost per candidate row, without the caller's thread competing for the GIL.

Run: python benchmarks/writer_cost.py [--runs 1000] [--candidates 200] [--rounds 3]

Records `--runs` runs of the canonical-questions pipeline (queries.py) with the writer's queue
replaced by a list, then encodes every captured record (`Intake.add`: unpacking, metrics,
candidate rows) and writes the lake (`Writer._write_all`) on this thread. Reports CPU µs per
candidate row of each phase (`time.thread_time`, medians of `--rounds` builds): the figure to
compare before and after a change to records/ or writer/ (run.py's `ingest` workload measures
the whole build, pipeline included).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import queries
from rich.console import Console

from xray_lake.writer import engine
from xray_lake.writer.process import get_writer


def one_round(runs: int, candidates: int) -> tuple[float, float, int]:
    captured: list[object] = []
    submit = engine.Writer.submit
    engine.Writer.submit = lambda self, ev: captured.append(ev)  # type: ignore[assignment,method-assign]
    root = tempfile.mkdtemp(prefix="xray-writer-cost-")
    try:
        # the engine on this thread (not a writer process): its cost is what is measured
        queries.build(root, runs, candidates, Console(quiet=True),
                      settings={**queries.writer_settings(), "writer": "thread"})
        writer = get_writer()
        before = writer.counters.rows_written["candidates"]
        t0 = time.thread_time()
        for ev in captured:
            writer._intake.add(ev)
        t1 = time.thread_time()
        writer._write_all()
        t2 = time.thread_time()
        rows = writer.counters.rows_written["candidates"] - before
        return (t1 - t0) * 1e6 / rows, (t2 - t1) * 1e6 / rows, rows
    finally:
        engine.Writer.submit = submit  # type: ignore[method-assign]
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    encode, write = [], []
    for _ in range(args.rounds):
        e, w, rows = one_round(args.runs, args.candidates)
        encode.append(e)
        write.append(w)
    print(f"{rows:,} candidate rows per round; CPU per candidate row, median of "
          f"{args.rounds}: encode {statistics.median(encode):.2f} µs, "
          f"write {statistics.median(write):.2f} µs")


if __name__ == "__main__":
    main()
