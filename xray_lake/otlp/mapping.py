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

import contextlib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson
from openinference.semconv.trace import (
    DocumentAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    RerankerAttributes,
    SpanAttributes,
)

import xray_lake as xr
from xray_lake.otlp.decode import SpanData

LabelFrom = Literal["root", "service"]

KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
RETRIEVER = OpenInferenceSpanKindValues.RETRIEVER.value
RERANKER = OpenInferenceSpanKindValues.RERANKER.value
JSON_MIME = OpenInferenceMimeTypeValues.JSON.value
SERVICE_NAME = "service.name"  # OpenTelemetry resource semantic conventions
MAX_DEPTH = 200  # deeper spans are recorded as children of the span at this depth
_FIELDS = {
    DocumentAttributes.DOCUMENT_ID: "id",
    DocumentAttributes.DOCUMENT_SCORE: "score",
    DocumentAttributes.DOCUMENT_CONTENT: "content",
    DocumentAttributes.DOCUMENT_METADATA: "metadata",
}
_INDEXED = re.compile(r"(\d+)\.(.+)")
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
    by_id = {s.span_id: s for s in spans}
    children: dict[str | None, list[SpanData]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in by_id else None  # orphans hang at the top
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.end_ns))
    tops = children.get(None, [])
    root = next((s for s in tops if s.parent_id is None), tops[0] if tops else spans[0])
    trace_id = root.trace_id
    service = root.resource.get(SERVICE_NAME)
    label = options.label or (str(service) if options.label_from == "service" and service
                              else root.name or str(service or "otlp"))
    attributes: dict[str, object] = {"otel.trace_id": trace_id, "otel.resource": root.resource}
    start = min(s.start_ns for s in spans) / 1e9
    end = max(s.end_ns for s in spans) / 1e9
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


def _record_span(run: xr.Run, span: SpanData, children: dict[str | None, list[SpanData]],
                 depth: int) -> None:
    kind = str(span.attributes.get(KIND, "")).upper()
    start, end = span.start_ns / 1e9, span.end_ns / 1e9
    name = span.name or kind.lower() or "span"
    below = children.get(span.span_id, [])
    if depth >= MAX_DEPTH:  # keep the rest of a very deep tree flat under this span
        below = list(_descendants(span, children))
    try:
        if kind == RETRIEVER:
            docs = documents(span.attributes, SpanAttributes.RETRIEVAL_DOCUMENTS,
                             _value(span, SpanAttributes.OUTPUT_VALUE))
            with run.stage(name, type="retrieval", id="id", score="score", started_at=start,
                           finished_at=end) as st:
                st.input(**_raw_inputs(span))
                _record_children(run, below, children, depth)
                st.output(docs)
                _fail_if_error(span)
        elif kind == RERANKER:
            given = documents(span.attributes, RerankerAttributes.RERANKER_INPUT_DOCUMENTS)
            ranked = documents(span.attributes, RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS)
            with run.stage(name, type="ranking", id="id", score="score", started_at=start,
                           finished_at=end) as st:
                st.input(given, **_raw_inputs(span))
                _record_children(run, below, children, depth)
                st.output(ranked)
                _fail_if_error(span)
        else:
            with run.stage(name, type="raw", started_at=start, finished_at=end) as st:
                st.input(**_raw_inputs(span))
                _record_children(run, below, children, depth)
                st.output(_value(span, SpanAttributes.OUTPUT_VALUE))
                _fail_if_error(span)
    except SpanFailed:
        pass


def _record_children(run: xr.Run, below: list[SpanData],
                     children: dict[str | None, list[SpanData]], depth: int) -> None:
    for child in below:
        _record_span(run, child, children if depth + 1 < MAX_DEPTH else {}, depth + 1)


def _descendants(span: SpanData, children: dict[str | None, list[SpanData]]
                 ) -> Iterable[SpanData]:
    todo = list(children.get(span.span_id, []))
    while todo:
        child = todo.pop(0)
        yield child
        todo.extend(children.get(child.span_id, []))


def _fail_if_error(span: SpanData) -> None:
    if span.error is not None:
        raise SpanFailed(span.error)


def _raw_inputs(span: SpanData) -> dict[str, object]:
    """input_json of the stage: the span's input value, kind and other attributes (document
    lists, recorded as candidates, left out)."""
    others = {k: v for k, v in span.attributes.items()
              if k not in _VALUES and not _is_document_key(k)}
    raw: dict[str, object] = {"input": _value(span, SpanAttributes.INPUT_VALUE)}
    if others:
        raw["attributes"] = others
    raw["otel.span_id"] = span.span_id
    return raw


_DOC_PREFIXES = (SpanAttributes.RETRIEVAL_DOCUMENTS + ".",
                 RerankerAttributes.RERANKER_INPUT_DOCUMENTS + ".",
                 RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS + ".")


def _is_document_key(key: str) -> bool:
    return key.startswith(_DOC_PREFIXES)


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


def documents(attributes: dict[str, object], prefix: str,
              output: object = None) -> list[dict[str, object]]:
    """The documents flattened under `prefix` (`prefix.N.document.id`, ...), in index order,
    as dicts with `id`, `score`, `content`, `metadata` (parsed from JSON) and any other
    `document.*` field under its own name.

    Documents without an id take it from the span's JSON `output` when that lists the same
    documents with theirs (LangChain's retriever spans carry ids only there)."""
    start = prefix + "."
    by_index: dict[int, dict[str, object]] = {}
    for key, value in attributes.items():
        if not key.startswith(start):
            continue
        match = _INDEXED.fullmatch(key[len(start):])
        if match is None:
            continue
        doc = by_index.setdefault(int(match.group(1)), {})
        name = match.group(2)
        field = _FIELDS.get(name) or name.removeprefix("document.")
        if field == "metadata" and isinstance(value, str):
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(value)
        doc[field] = value
    docs = [by_index[i] for i in sorted(by_index)]
    _ids_from_output(docs, output)
    for doc in docs:
        if doc.get("id") is None and isinstance(doc.get("content"), str):
            digest = hashlib.blake2b(str(doc["content"]).encode(), digest_size=8).hexdigest()
            doc["id"] = f"content:{digest}"
        elif doc.get("id") is not None:
            doc["id"] = str(doc["id"])
    return docs


def _ids_from_output(docs: list[dict[str, object]], output: object) -> None:
    """Fill missing ids from an output listing the same documents, in the same order, with
    ids (`{"documents": [{"id": ..., "page_content": ...}]}` or a plain list)."""
    if not docs or all(doc.get("id") is not None for doc in docs):
        return
    listed = output.get("documents") if isinstance(output, dict) else output
    if not isinstance(listed, list) or len(listed) != len(docs):
        return
    for doc, item in zip(docs, listed, strict=True):
        if not isinstance(item, dict) or item.get("id") is None:
            continue
        content = item.get("page_content", item.get("content"))
        if doc.get("id") is None and content == doc.get("content"):
            doc["id"] = item["id"]
