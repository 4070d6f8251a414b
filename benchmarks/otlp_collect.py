"""How many OpenInference RETRIEVER spans per second does `xray-lake collect` take into the
lake, end to end?

A client process sends OTLP/HTTP protobuf requests (512 spans each, the OpenTelemetry
BatchSpanProcessor's default batch) over one keep-alive connection, as fast as the collector
answers. Each trace is one CHAIN root span and `--retrievers` RETRIEVER spans with `--docs`
documents (id, score, content, metadata). The requests are encoded before the clock starts,
so the figure is the collector's: from the first request sent to every run durable in the
lake (the collector closed, its buffer written, `xr.flush` True). Then the lake is counted.

    python benchmarks/otlp_collect.py [--spans 20000] [--docs 50] [--retrievers 4]

Target (issue 16): >= 2,000 RETRIEVER spans/s with 50 documents each; moonshot 10,000.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openinference.semconv.trace import DocumentAttributes, SpanAttributes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import xray_lake as xr

BATCH = 512


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_requests(n_retrievers: int, docs: int, per_trace: int) -> list[bytes]:
    """The encoded requests: traces of one root + `per_trace` retrievers, 512 spans each."""
    spans: list[Span] = []
    start = time.time_ns()
    kind = SpanAttributes.OPENINFERENCE_SPAN_KIND
    prefix = SpanAttributes.RETRIEVAL_DOCUMENTS
    n_traces = -(-n_retrievers // per_trace)
    made = 0
    for t in range(n_traces):
        trace_id = (t + 1).to_bytes(16, "big")
        root_id = (1).to_bytes(8, "big")
        for r in range(min(per_trace, n_retrievers - made)):
            attributes = [_kv(kind, "RETRIEVER"), _kv(SpanAttributes.INPUT_VALUE, f"query {t}")]
            for d in range(docs):
                doc = f"{prefix}.{d}."
                attributes += [
                    _kv(doc + DocumentAttributes.DOCUMENT_ID, f"doc-{(t * 7 + r * 13 + d) % 5000}"),
                    _kv(doc + DocumentAttributes.DOCUMENT_SCORE, 1.0 - d / docs),
                    _kv(doc + DocumentAttributes.DOCUMENT_CONTENT,
                        f"product {d}: a red running shoe with a cushioned sole, size {d % 12}"),
                    _kv(doc + DocumentAttributes.DOCUMENT_METADATA,
                        json.dumps({"brand": f"b{d % 9}", "price": 20 + d})),
                ]
            spans.append(Span(trace_id=trace_id, span_id=(r + 2).to_bytes(8, "big"),
                              parent_span_id=root_id, name=f"retriever-{r}",
                              start_time_unix_nano=start + r * 1_000_000,
                              end_time_unix_nano=start + r * 1_000_000 + 5_000_000,
                              attributes=attributes))
            made += 1
        # the root ends last, so exporters send it after its children
        spans.append(Span(trace_id=trace_id, span_id=root_id, name="rag-query",
                          start_time_unix_nano=start, end_time_unix_nano=start + 50_000_000,
                          attributes=[_kv(kind, "CHAIN"), _kv(SpanAttributes.INPUT_VALUE,
                                                             f"query {t}")]))
    resource = Resource(attributes=[_kv("service.name", "bench")])
    return [ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=spans[i:i + BATCH])])]
    ).SerializeToString() for i in range(0, len(spans), BATCH)]


def send(url: str, requests: list[bytes], ready: mp.Event, go: mp.Event,  # type: ignore[valid-type]
         result: mp.Queue) -> None:  # type: ignore[type-arg]
    """The client: POST every request in order on one connection; retry on 503."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    ready.set()
    go.wait()
    rejected = retries = 0
    for body in requests:
        while True:
            conn.request("POST", parts.path, body, {"Content-Type": "application/x-protobuf"})
            answer = conn.getresponse()
            data = answer.read()
            if answer.status == 503:
                retries += 1
                time.sleep(0.05)
                continue
            if answer.status != 200:
                raise SystemExit(f"collector answered {answer.status}: {data[:200]!r}")
            rejected += ExportTraceServiceResponse.FromString(data).partial_success \
                .rejected_spans
            break
    result.put((rejected, retries))


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of process `pid` (Linux /proc)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000, help="RETRIEVER spans to send")
    parser.add_argument("--docs", type=int, default=50, help="documents per RETRIEVER span")
    parser.add_argument("--retrievers", type=int, default=4, help="RETRIEVER spans per trace")
    parser.add_argument("--root", default=None, help="lake root (default: a temp folder)")
    args = parser.parse_args()

    from xray_lake.otlp.buffer import Timing
    from xray_lake.otlp.collect import start

    requests = build_requests(args.spans, args.docs, args.retrievers)
    size = sum(map(len, requests))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or os.path.join(tmp, "lake")
        xr.configure(root=root, spool_dir=os.path.join(tmp, "spool"))
        cpu0 = _cpu_s()
        running = start("127.0.0.1", 0, timing=Timing(idle_s=0.5, max_wait_s=30),
                        max_spans=1_000_000)
        ctx = mp.get_context("spawn")
        ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
        client = ctx.Process(target=send, args=(running.url, requests, ready, go, result))
        client.start()
        ready.wait()
        t0 = time.perf_counter()
        go.set()
        rejected, retries = result.get()
        t_sent = time.perf_counter() - t0
        client.join()
        writer_pid = xr.stats().get("writer_pid")
        durable = running.close(timeout=600)
        elapsed = time.perf_counter() - t0
        cpu_collector = _cpu_s() - cpu0
        cpu_writer = _cpu_s(writer_pid) if writer_pid and writer_pid != os.getpid() else 0.0
        stats = running.server.stats()
        with xr.Lake(root) as lake:
            counts = lake.sql("select (select count(*) from runs) runs, "
                              "(select count(*) from stages where type = 'retrieval') retrievers, "
                              "(select count(*) from candidates) candidates").to_dicts()[0]
    expected = args.spans * args.docs
    print(f"sent {args.spans:,} RETRIEVER spans x {args.docs} documents in {len(requests)} "
          f"requests ({size / 1e6:.1f} MB protobuf); all answered after {t_sent:.2f} s")
    print(f"durable in the lake after {elapsed:.2f} s: {counts['runs']:,} runs, "
          f"{counts['retrievers']:,} retrieval stages, {counts['candidates']:,} candidate rows "
          f"(expected {expected:,}); flush {'True' if durable else 'False'}; "
          f"rejected {rejected}, 503 retries {retries}")
    print(f"=> {args.spans / elapsed:,.0f} RETRIEVER spans/s end to end "
          f"({args.spans * args.docs / elapsed:,.0f} candidate rows/s); "
          f"received at {args.spans / t_sent:,.0f} spans/s")
    busiest = max(cpu_collector, cpu_writer)
    print(f"CPU: collector process {cpu_collector:.2f} s, writer process {cpu_writer:.2f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores) => "
          f"{args.spans / busiest:,.0f} spans/s per busiest core")
    print(f"collector counters: {stats}")
    if counts["candidates"] != expected or counts["retrievers"] != args.spans or not durable:
        raise SystemExit("not everything reached the lake")


if __name__ == "__main__":
    main()
