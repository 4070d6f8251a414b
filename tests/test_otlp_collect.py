"""`xray-lake collect`: OTLP/HTTP traces from a real OpenTelemetry exporter, OTLP JSON, bad
input, partial success, traces split over requests, and `xray-lake import`."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto", reason="the otlp extra is part of [dev]")

from google.protobuf import json_format
from google.rpc import status_pb2
from openinference.semconv.trace import (
    DocumentAttributes,
    OpenInferenceSpanKindValues,
    RerankerAttributes,
    SpanAttributes,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.app import app
from xray_lake.loopback import is_loopback
from xray_lake.otlp import collect
from xray_lake.otlp.buffer import Timing

Lake = Callable[[], xr.Lake]
KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
DOCS = SpanAttributes.RETRIEVAL_DOCUMENTS
DOC_ID, DOC_SCORE, DOC_CONTENT = (DocumentAttributes.DOCUMENT_ID,
                                  DocumentAttributes.DOCUMENT_SCORE,
                                  DocumentAttributes.DOCUMENT_CONTENT)


@pytest.fixture
def collector() -> Iterator[collect.Running]:
    """A collector on 127.0.0.1 (a free port), writing into the test's lake; a trace is
    written 0.2 s after its root span."""
    running = collect.start("127.0.0.1", 0, timing=Timing(idle_s=0.2, max_wait_s=30))
    try:
        yield running
    finally:
        running.close()


def _provider(url: str, **exporter: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "rag-service"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, **exporter)))
    return provider


def _rag_trace(provider: TracerProvider) -> str:
    """A RAG request as an OpenInference instrumentor would emit it; returns the trace id."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("rag-query") as root:
        root.set_attribute(KIND, OpenInferenceSpanKindValues.CHAIN.value)
        root.set_attribute(SpanAttributes.INPUT_VALUE, "which shoes?")
        with tracer.start_as_current_span("retrieve") as span:
            span.set_attribute(KIND, OpenInferenceSpanKindValues.RETRIEVER.value)
            span.set_attribute(SpanAttributes.INPUT_VALUE, "shoes")
            for i in range(4):
                span.set_attribute(f"{DOCS}.{i}.{DOC_ID}", f"d{i}")
                span.set_attribute(f"{DOCS}.{i}.{DOC_SCORE}", 1.0 - i / 10)
                span.set_attribute(f"{DOCS}.{i}.{DOC_CONTENT}", f"shoe {i}")
                span.set_attribute(f"{DOCS}.{i}.{DocumentAttributes.DOCUMENT_METADATA}",
                                   json.dumps({"brand": f"b{i}"}))
        with tracer.start_as_current_span("rerank") as span:
            span.set_attribute(KIND, OpenInferenceSpanKindValues.RERANKER.value)
            prefix_in = RerankerAttributes.RERANKER_INPUT_DOCUMENTS
            prefix_out = RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS
            for i in range(4):
                span.set_attribute(f"{prefix_in}.{i}.{DOC_ID}", f"d{i}")
            for j, i in enumerate([2, 0]):
                span.set_attribute(f"{prefix_out}.{j}.{DOC_ID}", f"d{i}")
                span.set_attribute(f"{prefix_out}.{j}.{DOC_SCORE}", 0.9 - j / 10)
        with tracer.start_as_current_span("answer") as span:
            span.set_attribute(KIND, OpenInferenceSpanKindValues.LLM.value)
            span.set_attribute(SpanAttributes.INPUT_VALUE, "prompt with shoe 2")
            span.set_attribute(SpanAttributes.OUTPUT_VALUE, "buy shoe 2")
            span.set_attribute(SpanAttributes.LLM_MODEL_NAME, "fake-llm")
        root.set_attribute(SpanAttributes.OUTPUT_VALUE, "buy shoe 2")
        return format(root.get_span_context().trace_id, "032x")


def test_an_opentelemetry_exporter_sends_a_rag_trace_that_becomes_one_run(
        collector: collect.Running, lake: Lake) -> None:
    provider = _provider(collector.url)
    trace_id = _rag_trace(provider)
    provider.shutdown()
    assert collector.close()
    db = lake()
    run = db.sql("select * from runs").to_dicts()
    assert len(run) == 1
    assert (run[0]["run_id"], run[0]["label"], run[0]["status"], run[0]["n_stages"]) == (
        trace_id, "rag-query", "success", 4)
    assert json.loads(run[0]["input_json"]) == "which shoes?"
    assert json.loads(run[0]["attributes"])["otel.resource"]["service.name"] == "rag-service"
    stages = {s["name"]: s for s in db.sql("select * from stages").to_dicts()}
    assert {n: s["type"] for n, s in stages.items()} == {
        "rag-query": "raw", "retrieve": "retrieval", "rerank": "ranking", "answer": "raw"}
    root_id = stages["rag-query"]["stage_id"]
    assert all(stages[n]["parent_stage_id"] == root_id for n in ("retrieve", "rerank", "answer"))
    assert [stages[n]["seq"] for n in ("rag-query", "retrieve", "rerank", "answer")] == [1, 2, 3, 4]
    assert stages["retrieve"]["n_out"] == 4 and stages["retrieve"]["score_max"] == 1.0
    assert (stages["rerank"]["n_in"], stages["rerank"]["n_out"]) == (4, 2)
    assert json.loads(stages["answer"]["output_json"]) == "buy shoe 2"
    answer_in = json.loads(stages["answer"]["input_json"])
    assert answer_in["input"] == "prompt with shoe 2"
    assert answer_in["attributes"][SpanAttributes.LLM_MODEL_NAME] == "fake-llm"
    rows = db.sql("select stage_name, candidate_id, in_position, out_position, score, payload "
                  "from candidates order by stage_name, candidate_id").to_dicts()
    retrieved = [r for r in rows if r["stage_name"] == "retrieve"]
    assert [(r["candidate_id"], r["out_position"], r["score"]) for r in retrieved] == [
        ("d0", 0, 1.0), ("d1", 1, 0.9), ("d2", 2, 0.8), ("d3", 3, 0.7)]
    assert json.loads(retrieved[1]["payload"]) == {
        "id": "d1", "score": 0.9, "content": "shoe 1", "metadata": {"brand": "b1"}}
    reranked = [r for r in rows if r["stage_name"] == "rerank"]
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["score"])
            for r in reranked] == [("d0", 0, 1, 0.8), ("d1", 1, None, None),
                                   ("d2", 2, 0, 0.9), ("d3", 3, None, None)]
    assert db.journey(trace_id, "d1").verdict.startswith("cut at rerank")


def test_gzip_compressed_exports_are_read(collector: collect.Running, lake: Lake) -> None:
    provider = _provider(collector.url, compression=Compression.Gzip)
    _rag_trace(provider)
    provider.shutdown()
    assert collector.close()
    assert lake().sql("select count(*) n from candidates")["n"][0] == 8


def test_span_times_become_stage_and_run_times(collector: collect.Running, lake: Lake) -> None:
    start = 1_700_000_000_000_000_000  # ns
    root = _span(b"\x01" * 16, b"\x01" * 8, None, "pipeline", start, start + 3_000_000_000)
    child = _span(b"\x01" * 16, b"\x02" * 8, b"\x01" * 8, "step", start + 1_000_000_000,
                  start + 1_500_000_000)
    status, _ = _post(collector.url, _request([root, child]))
    assert status == 200
    assert collector.close()
    db = lake()
    run = db.sql("select date, duration_ms, epoch(started_at) t from runs").to_dicts()[0]
    assert run["date"] == "2023-11-14" and run["t"] == pytest.approx(1_700_000_000)
    assert run["duration_ms"] == pytest.approx(3000, abs=5)
    step = db.sql("select duration_ms from stages where name = 'step'")["duration_ms"][0]
    assert step == pytest.approx(500)


def test_spans_without_times_are_recorded_at_their_arrival(collector: collect.Running,
                                                           lake: Lake) -> None:
    span = _span(b"\x13" * 16, b"\x01" * 8, None, "untimed", start=0, end=0)
    assert _post(collector.url, _request([span]))[0] == 200
    assert collector.close()
    year = lake().sql("select year(started_at) y from runs")["y"][0]
    assert year >= 2026


def test_a_span_with_error_status_is_a_failed_stage(collector: collect.Running,
                                                    lake: Lake) -> None:
    root = _span(b"\x03" * 16, b"\x01" * 8, None, "pipeline")
    tool = _span(b"\x03" * 16, b"\x02" * 8, b"\x01" * 8, "search-tool", kind="TOOL")
    tool.status.code = tool.status.STATUS_CODE_ERROR
    tool.status.message = "timeout"
    assert _post(collector.url, _request([root, tool]))[0] == 200
    assert collector.close()
    db = lake()
    stage = db.sql("select status, error_message from stages where name = 'search-tool'")
    assert stage.to_dicts() == [{"status": "failure", "error_message": "timeout"}]
    assert db.sql("select status from runs")["status"][0] == "success"


def test_a_very_deep_trace_keeps_every_span(collector: collect.Running, lake: Lake) -> None:
    trace = b"\x11" * 16
    ids = [i.to_bytes(8, "big") for i in range(1, 302)]
    spans = [_span(trace, ids[0], None, "root")]
    spans += [_span(trace, ids[i], ids[i - 1], f"level-{i}") for i in range(1, 301)]
    assert _post(collector.url, _request(spans))[0] == 200
    assert collector.close()
    db = lake()
    assert db.sql("select n_stages from runs")["n_stages"].to_list() == [301]
    assert db.sql("select count(*) n from stages")["n"][0] == 301


def test_parent_links_in_a_cycle_are_cut_and_every_span_recorded(collector: collect.Running,
                                                                 lake: Lake) -> None:
    trace = b"\x12" * 16
    a, b, c = b"\x00" * 7 + b"\x01", b"\x00" * 7 + b"\x02", b"\x00" * 7 + b"\x03"
    spans = [_span(trace, a, b, "a"), _span(trace, b, a, "b"), _span(trace, c, c, "self")]
    assert _post(collector.url, _request(spans))[0] == 200
    assert collector.close()
    names = lake().sql("select name from stages order by name")["name"].to_list()
    assert names == ["a", "b", "self"]


# --- one trace, several requests ---------------------------------------------------------


def test_spans_of_one_trace_in_several_requests_make_one_run(collector: collect.Running,
                                                            lake: Lake) -> None:
    trace = b"\x05" * 16
    children = [_span(trace, bytes([0, 0, 0, 0, 0, 0, 0, i]), b"\x09" * 8, f"child-{i}",
                      kind="RETRIEVER", docs=3) for i in range(1, 4)]
    for child in children:  # the children, each in a request of its own, then the root
        assert _post(collector.url, _request([child]))[0] == 200
    assert _post(collector.url, _request([_span(trace, b"\x09" * 8, None, "root")]))[0] == 200
    assert collector.close()
    db = lake()
    assert db.sql("select count(*) n, max(n_stages) s from runs").to_dicts() == [{"n": 1, "s": 4}]
    assert db.sql("select count(*) n from candidates")["n"][0] == 9


def test_traces_still_buffered_at_shutdown_are_written(lake: Lake) -> None:
    running = collect.start("127.0.0.1", 0, timing=Timing(idle_s=60, max_wait_s=600))
    orphan = _span(b"\x06" * 16, b"\x02" * 8, b"\x01" * 8, "child-without-root")
    assert _post(running.url, _request([orphan]))[0] == 200
    assert running.close()
    assert lake().sql("select label from runs")["label"].to_list() == ["child-without-root"]


# --- bad input --------------------------------------------------------------------------


def test_malformed_protobuf_gets_400_with_the_reason_and_the_server_goes_on(
        collector: collect.Running, lake: Lake) -> None:
    status, body = _post(collector.url, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert status == 400
    assert "malformed protobuf" in status_pb2.Status.FromString(body).message
    status, _ = _post(collector.url, b"{not json", content_type="application/json")
    assert status == 400
    good = _request([_span(b"\x07" * 16, b"\x01" * 8, None, "ok")])
    assert _post(collector.url, good)[0] == 200
    assert collector.server.stats()["bad_requests"] == 2
    assert collector.close()
    assert lake().sql("select count(*) n from runs")["n"][0] == 1


def test_spans_without_a_trace_id_get_400(collector: collect.Running) -> None:
    status, body = _post(collector.url, _request([_span(b"", b"\x01" * 8, None, "x"),
                                                  _span(b"\0" * 16, b"\x02" * 8, None, "y")]))
    assert status == 400
    message = status_pb2.Status.FromString(body).message
    assert "2 spans: no valid trace id" in message
    assert collector.server.stats()["spans_rejected"] == 2


def test_a_span_with_huge_attributes_is_refused_with_its_size(collector: collect.Running) -> None:
    huge = _span(b"\x08" * 16, b"\x01" * 8, None, "huge")
    huge.attributes.append(KeyValue(key="blob", value=AnyValue(string_value="x" * 5_000_000)))
    status, body = _post(collector.url, _request([huge]))
    assert status == 400
    assert "over the size limit" in status_pb2.Status.FromString(body).message


def test_an_oversized_body_is_refused_before_it_is_read(lake: Lake) -> None:
    from xray_lake.otlp.decode import Limits

    running = collect.start("127.0.0.1", 0, limits=Limits(max_body_bytes=1000))
    try:
        status, body = _post(running.url, b"\0" * 5000)
        assert status == 400
        assert "over the limit" in status_pb2.Status.FromString(body).message
    finally:
        running.close()


def test_partial_success_counts_the_rejected_spans(collector: collect.Running,
                                                   lake: Lake) -> None:
    trace = b"\x0a" * 16
    good = [_span(trace, b"\x01" * 8, None, "root"), _span(trace, b"\x02" * 8, b"\x01" * 8, "a")]
    bad = [_span(b"", b"\x03" * 8, None, "no-trace"), _span(trace, b"\x02" * 8, b"\x01" * 8, "a")]
    status, body = _post(collector.url, _request(good + bad))
    assert status == 200
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 2
    assert "no valid trace id" in response.partial_success.error_message
    assert "duplicate span" in response.partial_success.error_message
    assert collector.close()
    assert lake().sql("select n_stages from runs")["n_stages"].to_list() == [2]


def test_a_retried_request_is_answered_as_duplicate_not_recorded_twice(
        collector: collect.Running, lake: Lake) -> None:
    request = _request([_span(b"\x0b" * 16, b"\x01" * 8, None, "root")])
    assert _post(collector.url, request)[0] == 200
    status, body = _post(collector.url, request)  # an exporter's retry
    assert status == 400
    assert "1 span: duplicate span" in status_pb2.Status.FromString(body).message
    assert collector.close()
    assert lake().sql("select count(*) n from stages")["n"][0] == 1


def test_spans_of_a_trace_already_written_are_refused_as_late(lake: Lake) -> None:
    running = collect.start("127.0.0.1", 0, timing=Timing(idle_s=0.0, max_wait_s=0.0))
    try:
        trace = b"\x0c" * 16
        assert _post(running.url, _request([_span(trace, b"\x01" * 8, None, "root")]))[0] == 200
        running.buffer.write_due()
        status, body = _post(running.url, _request([_span(trace, b"\x02" * 8, b"\x01" * 8,
                                                          "late")]))
        assert status == 400
        assert "late span" in status_pb2.Status.FromString(body).message
    finally:
        running.close()


def test_json_answers_json_and_other_content_types_get_415(collector: collect.Running) -> None:
    status, body = _post(collector.url, b"x", content_type="text/plain")
    assert status == 415
    status, body = _post(collector.url, json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "zz", "spanId": "0102030405060708", "name": "bad-hex"}]}]}]}).encode(),
        content_type="application/json")
    assert status == 400 and "no valid trace id" in json.loads(body)["message"]


def test_a_full_buffer_answers_503_so_the_exporter_retries(lake: Lake) -> None:
    running = collect.start("127.0.0.1", 0, timing=Timing(idle_s=60, max_wait_s=600),
                            max_spans=2)
    try:
        spans = [_span(b"\x0d" * 16, bytes([1] * 7 + [i]), None, f"s{i}") for i in range(2)]
        assert _post(running.url, _request(spans))[0] == 200
        status, _ = _post(running.url, _request([_span(b"\x0e" * 16, b"\x01" * 8, None, "x")]))
        assert status == 503
    finally:
        running.close()


def test_the_buffer_is_bounded_in_bytes_as_well_as_spans() -> None:
    from xray_lake.otlp.buffer import Busy, TraceBuffer
    from xray_lake.otlp.decode import SpanData

    def span(trace: str, size: int) -> SpanData:
        return SpanData(trace, "01" * 8, None, "s", 0, 0, None, {}, {}, size=size)

    buffer = TraceBuffer(lambda spans: None, max_bytes=1000)
    buffer.add([span("aa" * 16, 600)])
    with pytest.raises(Busy, match="bytes"):
        buffer.add([span("bb" * 16, 600)])
    buffer.write_due(everything=True)  # written: room again
    buffer.add([span("bb" * 16, 600)])


def test_spans_arriving_after_close_are_refused_for_a_retry_not_lost() -> None:
    from xray_lake.otlp.buffer import Busy, TraceBuffer
    from xray_lake.otlp.decode import SpanData

    written: list[list[SpanData]] = []
    buffer = TraceBuffer(written.append)
    buffer.close()
    with pytest.raises(Busy, match="shutting down"):
        buffer.add([SpanData("aa" * 16, "01" * 8, None, "s", 0, 0, None, {}, {})])
    assert written == []


# --- OTLP JSON and import ----------------------------------------------------------------


def _json_request(trace_hex: str) -> dict[str, Any]:
    """An OTLP JSON request with hex ids, as the OTLP spec and file exporters write them."""
    def attr(key: str, value: Any) -> dict[str, Any]:
        kind = "doubleValue" if isinstance(value, float) else "stringValue"
        return {"key": key, "value": {kind: value}}

    docs = [attr(f"{DOCS}.{i}.{DOC_ID}", f"doc-{i}") for i in range(3)]
    docs += [attr(f"{DOCS}.{i}.{DOC_SCORE}", i / 2) for i in range(3)]
    return {"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", "json-svc")]},
        "scopeSpans": [{"spans": [
            {"traceId": trace_hex, "spanId": "0000000000000001", "name": "query",
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
             "attributes": [attr(KIND, "CHAIN")]},
            {"traceId": trace_hex, "spanId": "0000000000000002",
             "parentSpanId": "0000000000000001", "name": "vector-search",
             "startTimeUnixNano": "1700000000100000000", "endTimeUnixNano": "1700000000200000000",
             "attributes": [attr(KIND, "RETRIEVER"), *docs]},
        ]}]}]}


def test_otlp_json_requests_are_recorded_and_answered_in_json(collector: collect.Running,
                                                              lake: Lake) -> None:
    trace = "5b8efff798038103d269b633813fc60c"
    status, body = _post(collector.url, json.dumps(_json_request(trace)).encode(),
                         content_type="application/json")
    assert status == 200 and json.loads(body) == {}
    assert collector.close()
    db = lake()
    assert db.sql("select run_id, label from runs").to_dicts() == [
        {"run_id": trace, "label": "query"}]
    assert db.sql("select candidate_id, score from candidates order by out_position") \
        .rows() == [("doc-0", 0.0), ("doc-1", 0.5), ("doc-2", 1.0)]


def test_import_reads_json_and_json_lines_files(tmp_path: Path, isolated_lake: str) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(_json_request("11" * 16)))
    lines = tmp_path / "more.jsonl"
    lines.write_text(json.dumps(_json_request("22" * 16)) + "\n"
                     + json.dumps(_json_request("33" * 16)) + "\n")
    result = CliRunner().invoke(app, ["import", "--root", isolated_lake, "--label-from",
                                      "service", str(one), str(lines)])
    assert result.exit_code == 0, result.output
    assert "3 run(s)" in result.output
    db = xr.Lake(isolated_lake)
    assert db.sql("select label, count(*) n from runs group by 1").rows() == [("json-svc", 3)]
    assert db.sql("select count(*) n from candidates")["n"][0] == 9


def test_import_names_a_file_it_cannot_read(tmp_path: Path, isolated_lake: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json\n")
    result = CliRunner().invoke(app, ["import", "--root", isolated_lake, str(bad)])
    assert result.exit_code == 1
    assert "bad.json:1: not JSON" in result.output


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


def test_a_missing_extra_names_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import xray_lake.otlp as otlp

    monkeypatch.setattr(otlp, "_NEEDED", (("no_such_module_xyz", "opentelemetry-proto"),))
    with pytest.raises(xr.XrayLakeError, match=r"pip install 'xray-lake\[otlp\]'"):
        otlp.require()


# --- helpers ---------------------------------------------------------------------------


def _span(trace: bytes, span: bytes, parent: bytes | None, name: str,
          start: int = 1_700_000_000_000_000_000, end: int = 1_700_000_000_500_000_000,
          kind: str = "CHAIN", docs: int = 0) -> Span:
    out = Span(trace_id=trace, span_id=span, parent_span_id=parent or b"", name=name,
               start_time_unix_nano=start, end_time_unix_nano=end)
    out.attributes.append(KeyValue(key=KIND, value=AnyValue(string_value=kind)))
    for i in range(docs):
        out.attributes.append(KeyValue(key=f"{DOCS}.{i}.{DOC_ID}",
                                       value=AnyValue(string_value=f"{name}-{i}")))
    return out


def _request(spans: list[Span]) -> bytes:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()


def _post(url: str, body: bytes, content_type: str = "application/x-protobuf",
          encoding: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if encoding == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


_ = json_format  # JSON answers are checked with json.loads; the import keeps the dependency


@pytest.mark.slow  # a fresh interpreter running the CLI
def test_the_collect_command_serves_until_interrupted_and_writes_what_it_holds(
        tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys

    root = str(tmp_path / "cli-lake")
    process = subprocess.Popen(
        [sys.executable, "-m", "xray_lake", "collect", "--root", root, "--port", "0",
         "--idle", "600"], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1/traces)", line)
        assert found, line
        trace = _span(b"\x0f" * 16, b"\x01" * 8, None, "cli-run")
        assert _post(found.group(1), _request([trace]))[0] == 200
        process.send_signal(signal.SIGINT)  # the trace waits (--idle 600): Ctrl-C writes it
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "traces_written 1" in rest
    assert xr.Lake(root).sql("select label from runs")["label"].to_list() == ["cli-run"]
