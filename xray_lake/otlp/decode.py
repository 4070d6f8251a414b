"""OTLP trace requests (protobuf or JSON) as plain spans, with the reason each refused span
or request was refused.

A request that cannot be parsed at all raises `BadRequest`; a span that is unusable (no trace
or span id, over the size limit, twice in one request) is left out and counted by reason, so
the server can answer with OTLP's partial success.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from xray_lake.otlp.documents import PREFIXES, SEEN, Documents, Slot, group, locate

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class BadRequest(Exception):
    """A request that cannot be read at all; the message is the reason sent back."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request and one span may weigh (bytes, as encoded)."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_span_bytes: int = 4 * 1024 * 1024


@dataclass(slots=True)
class SpanData:
    """One span, decoded: ids as lowercase hex, times in epoch nanoseconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    error: str | None  # the status message (or "error") when the span's status is ERROR
    attributes: dict[str, object]  # all but OpenInference's document lists, which are in
    resource: dict[str, object]
    documents: dict[str, Documents] = field(default_factory=dict)  # list name -> documents
    size: int = 0  # bytes as encoded: what it weighs in the collector's buffer


@dataclass(slots=True)
class Decoded:
    """The usable spans of one request, and how many were refused, by reason."""

    spans: list[SpanData] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def reasons(self) -> str:
        """'3 spans: no trace id; 1 span: duplicate ...' for the answer and the log."""
        return "; ".join(f"{n} span{'s' if n > 1 else ''}: {reason}"
                         for reason, n in self.rejected.most_common())


def decode(body: bytes, content_type: str, limits: Limits | None = None) -> Decoded:
    """The spans of an OTLP/HTTP trace request body; raises BadRequest if it is unreadable."""
    return spans_of(parse(body, content_type), limits)


def parse(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The request message from its protobuf or JSON encoding."""
    request = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise BadRequest(f"malformed protobuf: {exc or 'cannot be parsed'}") from None
        return request
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    return from_json(data)


def from_json(data: object) -> ExportTraceServiceRequest:
    """OTLP JSON (trace and span ids in hex, as the OTLP spec encodes them) as the message."""
    if not isinstance(data, dict):
        raise BadRequest("malformed OTLP JSON: the body is not an object with resourceSpans")
    for resource_spans in _list(data.get("resourceSpans", data.get("resource_spans"))):
        for scope_spans in _list(_get(resource_spans, "scopeSpans", "scope_spans")):
            for span in _list(_get(scope_spans, "spans")):
                if isinstance(span, dict):
                    _ids_to_base64(span)
                    for link in _list(span.get("links")):
                        if isinstance(link, dict):
                            _ids_to_base64(link)
    try:
        request = ExportTraceServiceRequest()
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
        return request
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise BadRequest(f"malformed OTLP JSON: {exc}") from None


def _get(obj: object, *names: str) -> object:
    if not isinstance(obj, dict):
        return None
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


_ID_KEYS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))


def _ids_to_base64(span: dict[str, Any]) -> None:
    """protobuf's JSON reads bytes as base64; OTLP JSON writes ids as hex. An id that is no hex
    becomes empty, so the span is refused for it rather than the whole request."""
    for names in _ID_KEYS:
        for name in names:
            value = span.get(name)
            if isinstance(value, str):
                try:
                    span[name] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    span[name] = ""


def spans_of(request: ExportTraceServiceRequest, limits: Limits | None = None) -> Decoded:
    """Plain spans of a parsed request; unusable spans are counted, not returned."""
    limits = limits or Limits()
    out = Decoded()
    seen: set[tuple[bytes, bytes]] = set()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                reason = _refusal(span, limits, seen)
                if reason is not None:
                    out.rejected[reason] += 1
                    continue
                out.spans.append(_plain(span, resource, span.ByteSize()))
    return out


def _refusal(span: Span, limits: Limits, seen: set[tuple[bytes, bytes]]) -> str | None:
    """Why `span` cannot be recorded, or None."""
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "no valid trace id (16 bytes, not all zero)"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "no valid span id (8 bytes, not all zero)"
    key = (span.trace_id, span.span_id)
    if key in seen:
        return "duplicate span (the same trace and span id twice in one request)"
    size = span.ByteSize()
    if size > limits.max_span_bytes:
        return (f"span over the size limit ({size:,} bytes of attributes and events, limit "
                f"{limits.max_span_bytes:,})")
    seen.add(key)
    return None


def _plain(span: Span, resource: dict[str, object], size: int) -> SpanData:
    error = None
    if span.status.code == Status.STATUS_CODE_ERROR:
        error = span.status.message or "error"
    parent = span.parent_span_id
    attrs, documents = span_attributes(span.attributes)
    return SpanData(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=parent.hex() if len(parent) == 8 and any(parent) else None,
        name=span.name,
        start_ns=span.start_time_unix_nano,
        end_ns=max(span.end_time_unix_nano, span.start_time_unix_nano),
        error=error,
        attributes=attrs,
        resource=resource,
        documents=documents,
        size=size,
    )


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def span_attributes(pairs: Any) -> tuple[dict[str, object], dict[str, Documents]]:
    """A span's attributes as a dict, with OpenInference's document lists grouped apart:
    one pass, a table lookup per document field (this is the collector's hottest loop)."""
    plain: dict[str, object] = {}
    slots: dict[Slot, dict[str, object]] = {}
    seen = SEEN
    for kv in pairs:
        key = kv.key
        v = kv.value
        kind = v.WhichOneof("value")
        item = getattr(v, kind) if kind in _SCALARS else value(v)
        where = seen.get(key)
        if where is None and key.startswith(PREFIXES):
            where = locate(key)
        if where is None:
            plain[key] = item
            continue
        slot, name = where
        doc = slots.get(slot)
        if doc is None:
            doc = slots[slot] = {}
        doc[name] = item
    return plain, group(slots) if slots else {}


def attributes(pairs: Any) -> dict[str, object]:
    """Key-value pairs (OTLP `KeyValue`s) as a dict of plain Python values."""
    return {kv.key: value(kv.value) for kv in pairs}


def value(v: AnyValue) -> object:
    """One OTLP `AnyValue` as a plain value; bytes as base64 text (JSON has no bytes)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return binascii.b2a_base64(v.bytes_value, newline=False).decode()
    return None
