"""One trace's spans as one run, written through the SDK's context-manager API.

The run: run id = trace id; label = the root span's name (or the resource's `service.name`,
by choice); times, status, input and output from the root span. Each span is a stage, nested
as the spans are (so `parent_stage_id` follows the span tree), in start order:

- RETRIEVER -> retrieval stage: one candidate per `retrieval.documents.N.document.*`, with
  its id, score, content and metadata;
- RERANKER -> ranking stage: `reranker.input_documents` in, `reranker.output_documents` out,
  with positions and scores;
- every other span (LLM, TOOL, CHAIN, EMBEDDING, AGENT, unknown) -> raw stage with its input
  and output values and its attributes.

A document without `document.id` gets `content:<hash of its content>`, so the same text has
one candidate id across the retrieval and reranking stages of a run.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson
from openinference.semconv.trace import (
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    RerankerAttributes,
    SpanAttributes,
)

import xray_lake as xr
from xray_lake.otlp.decode import SpanData
from xray_lake.otlp.documents import Documents

LabelFrom = Literal["root", "service"]

KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
RETRIEVER = OpenInferenceSpanKindValues.RETRIEVER.value
RERANKER = OpenInferenceSpanKindValues.RERANKER.value
JSON_MIME = OpenInferenceMimeTypeValues.JSON.value
SERVICE_NAME = "service.name"  # OpenTelemetry resource semantic conventions
MAX_DEPTH = 200  # deeper spans are recorded as children of the span at this depth
_VALUES = {SpanAttributes.INPUT_VALUE, SpanAttributes.OUTPUT_VALUE,
           SpanAttributes.INPUT_MIME_TYPE, SpanAttributes.OUTPUT_MIME_TYPE}


class SpanFailed(Exception):
    """Raised inside a stage or run block to record a span whose status is ERROR."""

    code = "otel.status.error"


@dataclass(frozen=True, slots=True)
class Options:
    label_from: LabelFrom = "root"
    label: str | None = None  # overrides both


def record_trace(spans: list[SpanData], options: Options | None = None) -> str:
    """Write one trace as one run; returns its run id (the trace id)."""
    options = options or Options()
    tops, children = forest(spans)
    root = next((s for s in tops if s.parent_id is None), tops[0] if tops else spans[0])
    trace_id = root.trace_id
    service = root.resource.get(SERVICE_NAME)
    label = options.label or (str(service) if options.label_from == "service" and service
                              else root.name or str(service or "otlp"))
    attributes: dict[str, object] = {"otel.trace_id": trace_id, "otel.resource": root.resource}
    timed = [s for s in spans if s.start_ns]  # a span without times is recorded as received
    start = min(s.start_ns for s in timed) / 1e9 if timed else None
    end = max(s.end_ns for s in timed) / 1e9 if timed else None
    failed = root.error is not None and root.parent_id is None
    try:
        with xr.run(label, run_id=trace_id, attributes=attributes,
                    input=_value(root, SpanAttributes.INPUT_VALUE),
                    started_at=start, finished_at=end) as run:
            run.output = _value(root, SpanAttributes.OUTPUT_VALUE)
            for span in tops:
                _record_span(run, span, children, 0)
            if failed:
                raise SpanFailed(root.error)
    except SpanFailed:
        pass
    return trace_id


Children = dict[str, list[SpanData]]  # span id -> its child spans, in start order


def forest(spans: list[SpanData]) -> tuple[list[SpanData], Children]:
    """The spans as trees: the top spans (the root, and spans whose parent never arrived) and
    each span's children, in start order. Parent links that make a cycle are cut, so every
    span is in exactly one tree."""
    order = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    by_id = {s.span_id: s for s in order}
    wanted: Children = {}
    for span in order:
        if span.parent_id in by_id and span.parent_id != span.span_id:
            wanted.setdefault(span.parent_id, []).append(span)
    tops = [s for s in order if s.parent_id not in by_id or s.parent_id == s.span_id]
    children: Children = {}
    seen: set[str] = set()

    def grow(top: SpanData) -> None:
        seen.add(top.span_id)
        todo = [top]
        while todo:
            span = todo.pop()
            for child in wanted.get(span.span_id, ()):
                if child.span_id not in seen:
                    seen.add(child.span_id)
                    children.setdefault(span.span_id, []).append(child)
                    todo.append(child)

    for top in tops:
        grow(top)
    for span in order:  # only in cycles: the earliest of each becomes a top
        if span.span_id not in seen:
            tops.append(span)
            grow(span)
    return tops, children


def _record_span(run: xr.Run, span: SpanData, children: Children, depth: int) -> None:
    kind = str(span.attributes.get(KIND, "")).upper()
    start = span.start_ns / 1e9 if span.start_ns else None
    end = span.end_ns / 1e9 if span.start_ns else None
    name = span.name or kind.lower() or "span"
    below = children.get(span.span_id, [])
    if depth >= MAX_DEPTH:  # the rest of a very deep tree: flat under this span
        below, children = list(_descendants(span, children)), {}
    groups = span.documents
    others = {k: v for k, v in span.attributes.items() if k not in _VALUES}
    raw: dict[str, object] = {"input": _value(span, SpanAttributes.INPUT_VALUE)}
    if others:
        raw["attributes"] = others
    raw["otel.span_id"] = span.span_id
    try:
        if kind == RETRIEVER:
            docs = documents(groups.get(SpanAttributes.RETRIEVAL_DOCUMENTS),
                             _value(span, SpanAttributes.OUTPUT_VALUE))
            with run.stage(name, type="retrieval", id="id", score="score", started_at=start,
                           finished_at=end) as st:
                st.input(**raw)
                _record_children(run, below, children, depth)
                st.output(docs)
                _fail_if_error(span)
        elif kind == RERANKER:
            given = documents(groups.get(RerankerAttributes.RERANKER_INPUT_DOCUMENTS))
            ranked = documents(groups.get(RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS))
            with run.stage(name, type="ranking", id="id", score="score", started_at=start,
                           finished_at=end) as st:
                st.input(given, **raw)
                _record_children(run, below, children, depth)
                st.output(ranked)
                _fail_if_error(span)
        else:
            with run.stage(name, type="raw", started_at=start, finished_at=end) as st:
                st.input(**raw)
                _record_children(run, below, children, depth)
                st.output(_value(span, SpanAttributes.OUTPUT_VALUE))
                _fail_if_error(span)
    except SpanFailed:
        pass


def _record_children(run: xr.Run, below: list[SpanData], children: Children,
                     depth: int) -> None:
    for child in below:
        _record_span(run, child, children, depth + 1)


def _descendants(span: SpanData, children: Children) -> Iterable[SpanData]:
    todo = deque(children.get(span.span_id, []))
    while todo:
        child = todo.popleft()
        yield child
        todo.extend(children.get(child.span_id, []))


def _fail_if_error(span: SpanData) -> None:
    if span.error is not None:
        raise SpanFailed(span.error)


def _value(span: SpanData, key: str) -> object:
    """`input.value` / `output.value`, parsed when its mime type says JSON."""
    value = span.attributes.get(key)
    mime = span.attributes.get(key.replace(".value", ".mime_type"))
    if isinstance(value, str) and mime == JSON_MIME:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def documents(group: Documents | None, output: object = None) -> list[dict[str, object]]:
    """One document list of a span (decoded by otlp/documents.py) in index order, as dicts
    with `id`, `score`, `content`, `metadata` (parsed from JSON) and any other
    `document.*` field under its own name.

    Documents without an id take it from the span's JSON `output` when that lists the same
    documents with theirs (LangChain's retriever spans carry ids only there), else
    `content:<hash of the content>`."""
    if not group:
        return []
    docs = [group[i] for i in sorted(group)]
    loads, bad_json = orjson.loads, orjson.JSONDecodeError
    missing = False
    for doc in docs:
        metadata = doc.get("metadata")
        if metadata.__class__ is str:
            try:  # noqa: SIM105 - a with-block per document costs more than this
                doc["metadata"] = loads(metadata)
            except bad_json:
                pass
        ident = doc.get("id")
        if ident is None:
            missing = True
        elif ident.__class__ is not str:
            doc["id"] = str(ident)
    if missing:
        _ids_from_output(docs, output)
        for doc in docs:
            if doc.get("id") is None and isinstance(doc.get("content"), str):
                digest = hashlib.blake2b(str(doc["content"]).encode(), digest_size=8)
                doc["id"] = f"content:{digest.hexdigest()}"
    return docs


def _ids_from_output(docs: list[dict[str, object]], output: object) -> None:
    """Fill missing ids from an output listing the same documents, in the same order, with
    ids (`{"documents": [{"id": ..., "page_content": ...}]}` or a plain list)."""
    listed = output.get("documents") if isinstance(output, dict) else output
    if not isinstance(listed, list) or len(listed) != len(docs):
        return
    for doc, item in zip(docs, listed, strict=True):
        if not isinstance(item, dict) or item.get("id") is None:
            continue
        content = item.get("page_content", item.get("content"))
        if doc.get("id") is None and content == doc.get("content"):
            doc["id"] = str(item["id"])
