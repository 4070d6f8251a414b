"""Prototype of design (a) in docs/design/writer.md: the writer in a process of its own.

Run: python benchmarks/writer_process_prototype.py [--runs 2000] [--candidates 200]

Measures the data path a writer process would have, on the burst workload (burst.py), with
real processes and a real pipe, so the figures include what (a) adds and what it removes:
  1. caller: the burst loop with the writer's queue replaced by a list (the SDK's own hot
     path, no writer competing for the GIL);
  2. wire: each queued record reduced to what the writer reads (ids instead of the caller's
     objects, where the record carries them) and pickled, on the caller's side;
  3. writer process: a child reads the pickled records from a pipe while the parent sends
     them, builds metrics, Arrow and Parquet (the real `Intake.add` / `Writer._write_all`), fsyncs,
     and reports. Time to durable is measured from the start of sending.
Prints each phase and the projected burst figures for (a): caller overhead = loop + wire,
time to durable = the end of the child's write measured from the start of the loop, assuming
the loop and the child overlap as they would with a pipe between them.
"""

import argparse
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FRAME = struct.Struct("!I")


def _wire(ev: Any) -> bytes:
    """The record as a writer process would get it: caller objects replaced where the record
    already holds what the writer reads from them (their ids); pickled."""
    from xray_lake.records.encode import to_json
    from xray_lake.records.events import StageEvent

    if isinstance(ev, StageEvent):
        # raw values are encoded (capped) before they leave: the writer keeps only the JSON
        ev.inputs.raw = to_json(ev.inputs.raw, 65536)[0] if ev.inputs.raw else None
        ev.outputs.raw = to_json(ev.outputs.raw, 65536)[0] if ev.outputs.raw is not None else None
        if ev.inputs.refs is not None and ev.inputs.keys is not None and len(ev.inputs.keys) == len(ev.inputs.refs):
            ev.inputs.refs = [None] * len(ev.inputs.refs)
        if ev.outputs.refs is not None:
            ev.outputs.refs = list(range(len(ev.outputs.refs)))
    else:
        ev.input = to_json(ev.input, 65536)[0]
        ev.output = to_json(ev.output, 65536)[0]
    return pickle.dumps(ev, protocol=5)


def child(root: str) -> None:
    """Read framed records from stdin, write them to the lake at `root`, report the times."""
    import xray_lake as xr
    from xray_lake.writer.process import get_writer

    xr.configure(root=root)
    writer = get_writer()
    stream = sys.stdin.buffer
    n = 0
    t_first = None
    while True:
        head = stream.read(FRAME.size)
        if len(head) < FRAME.size:
            break
        (size,) = FRAME.unpack(head)
        ev = pickle.loads(stream.read(size))
        if t_first is None:
            t_first = time.perf_counter()
        writer._intake.add(ev)
        n += 1
        if writer._intake.buffered_bytes >= writer.memory.flush_at:  # as the worker's cadence does
            writer._write_all()
    writer._write_all()
    done = time.perf_counter()
    rows = writer.counters.rows_written["candidates"]
    print(f"{n} {rows} {done - (t_first or done):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # the prototype drives the engine itself, on its own thread and in its own child
    os.environ.setdefault("XRAY_LAKE_WRITER", "thread")
    if args.child:
        child(args.child)
        return
    import random

    import burst

    from xray_lake.writer import engine

    captured: list[Any] = []
    engine.Writer.submit = lambda self, ev: captured.append(ev)  # type: ignore[method-assign]
    root = tempfile.mkdtemp(prefix="xray-proto-")
    try:
        rng = random.Random(7)
        pool = [{"id": f"sku-{j}", "title": f"product {j}", "price": rng.uniform(1, 1000),
                 "rating": rng.uniform(0, 5), "brand": f"b{j % 40}"} for j in range(20_000)]
        cutoffs = [50.0 if rng.random() < burst.HEAVY_SHARE else 700.0 for _ in range(args.runs)]
        run_one, _ = burst._pipeline("xray", os.path.join(root, "unused"))
        off_one, _ = burst._pipeline("off", root)
        t0 = time.perf_counter()
        for i in range(args.runs):
            off_one(i, pool, args.candidates, cutoffs[i])
        off_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(args.runs):
            run_one(i, pool, args.candidates, cutoffs[i])
        loop_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames = [_wire(ev) for ev in captured]
        wire_s = time.perf_counter() - t0
        lake = os.path.join(root, "lake")
        proc = subprocess.Popen([sys.executable, __file__, "--child", lake],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
        time.sleep(2.0)  # the child's start-up (imports) happens before the burst in real use
        assert proc.stdin is not None and proc.stdout is not None
        t0 = time.perf_counter()
        for frame in frames:
            proc.stdin.write(FRAME.pack(len(frame)))
            proc.stdin.write(frame)
        proc.stdin.close()
        send_s = time.perf_counter() - t0
        _, rows, busy = proc.stdout.read().split()
        durable_s = time.perf_counter() - t0
        proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    nbytes = sum(map(len, frames))
    print(f"burst {args.runs} runs x {args.candidates}: {len(captured)} records, "
          f"{int(rows):,} candidate rows, {nbytes / 2**20:.0f} MiB on the wire")
    print(f"caller loop (writer idle) {loop_s:.2f} s; recording off {off_s:.2f} s; "
          f"SDK on the caller {(loop_s - off_s) / args.runs * 1e6:.0f} µs/run")
    print(f"wire (reduce + pickle) {wire_s:.2f} s = {wire_s / args.runs * 1e6:.0f} µs/run")
    print(f"writer process: sent in {send_s:.2f} s, durable {durable_s:.2f} s after the first "
          f"byte ({int(rows) / float(busy):,.0f} rows/s while busy)")
    print(f"projected (a): caller overhead {(loop_s - off_s + wire_s) / args.runs * 1e6:.0f} "
          f"µs/run; durable ~ max(loop + wire, child) = "
          f"{max(loop_s + wire_s, durable_s):.2f} s")


if __name__ == "__main__":
    main()
