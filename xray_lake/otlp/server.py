"""`xray-lake collect`'s OTLP/HTTP receiver: POST /v1/traces, protobuf or JSON.

The standard library's ThreadingHTTPServer is enough for one endpoint that reads a body and
answers a small message, and adds no dependency to the `otlp` extra; the work per request
(decoding, buffering) holds the interpreter lock either way, so an async server would not
take more spans per second (benchmarks/otlp_collect.py measures it).

Answers, as the OTLP/HTTP specification asks: 200 with an empty ExportTraceServiceResponse
when every span was taken; 200 with `partial_success` (`rejected_spans`, `error_message`)
when some were refused; 400 with a google.rpc.Status naming the reason when the request is
unreadable or every span was refused; 503 (retryable) when the buffer is full; 415 for a
content type other than protobuf or JSON. Each refused span and bad request is counted.
"""

from __future__ import annotations

import gzip
import logging
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from xray_lake.otlp.buffer import Busy, TraceBuffer
from xray_lake.otlp.decode import JSON, PROTOBUF, BadRequest, Decoded, Limits, decode

log = logging.getLogger("xray_lake.otlp")
PATH = "/v1/traces"


@dataclass(slots=True)
class Counters:
    """What the server received and refused (shared by the handler threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    values: Counter[str] = field(default_factory=Counter)

    def add(self, **counts: int) -> None:
        with self.lock:
            self.values.update(counts)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


class Collector(ThreadingHTTPServer):
    """The receiver bound to (host, port); spans go to `buffer`. Port 0 picks a free port."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, buffer: TraceBuffer, host: str = "127.0.0.1", port: int = 4318,
                 limits: Limits | None = None) -> None:
        self.buffer = buffer
        self.limits = limits or Limits()
        self.counters = Counters()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    def stats(self) -> dict[str, int]:
        """Requests and spans received, refused (by kind) and traces written."""
        return {**self.counters.snapshot(), **self.buffer.counters}


class _Handler(BaseHTTPRequestHandler):
    server: Collector
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:
        try:
            self._post()
        except Exception as err:  # a bug of ours: answered and counted, the server goes on
            self.server.counters.add(internal_errors=1)
            log.exception("xray-lake collect: internal error on a request")
            self.close_connection = True
            self._status(500, f"internal error: {type(err).__name__}", False)

    def _post(self) -> None:
        counters = self.server.counters
        counters.add(requests=1)
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        json_answer = kind == JSON
        try:
            body = self._body()
            if kind not in (PROTOBUF, JSON):
                self._drain_failed(415, f"content type {kind or '(none)'!r} is not "
                                        f"{PROTOBUF} or {JSON}", json_answer)
                return
            decoded = decode(body, kind, self.server.limits)
        except BadRequest as exc:
            counters.add(bad_requests=1)
            log.warning("xray-lake collect: bad request from %s: %s", self.client_address[0],
                        exc)
            self._status(400, str(exc), json_answer)
            return
        try:
            refused = self.server.buffer.add(decoded.spans) if decoded.spans else Counter()
        except Busy as exc:
            counters.add(busy_requests=1)
            self._status(503, str(exc), json_answer, retry_after=1)
            return
        decoded.rejected.update(refused)
        accepted = len(decoded.spans) - sum(refused.values())
        counters.add(spans_received=len(decoded.spans) + sum(decoded.rejected.values()),
                     spans_rejected=decoded.n_rejected)
        if decoded.n_rejected and accepted <= 0:
            counters.add(bad_requests=1)
            log.warning("xray-lake collect: refused every span of a request: %s",
                        decoded.reasons())
            self._status(400, f"no span recorded: {decoded.reasons()}", json_answer)
            return
        self._success(decoded, json_answer)

    def do_GET(self) -> None:
        self._status(405, f"POST OTLP traces to {PATH}", False)

    def _body(self) -> bytes:
        if self.path.split("?")[0] != PATH:
            self.close_connection = True  # its body is not read
            raise BadRequest(f"no such endpoint {self.path!r}: POST traces to {PATH}")
        limit = self.server.limits.max_body_bytes
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise BadRequest("a Content-Length header is required")
        size = int(length)
        if size > limit:
            self.close_connection = True  # the unread body must not be taken for a request
            raise BadRequest(f"body of {size:,} bytes is over the limit of {limit:,}")
        body = self.rfile.read(size)
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding not in ("gzip", "deflate"):
            raise BadRequest(f"content encoding {encoding!r} is not gzip or deflate")
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip"
                                          else zlib.MAX_WBITS)
            out = inflater.decompress(body, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise BadRequest(f"body is not valid {encoding}: {exc}") from None
        if len(out) > limit:
            raise BadRequest(f"decompressed body is over the limit of {limit:,} bytes")
        return out

    def _drain_failed(self, code: int, message: str, json_answer: bool) -> None:
        self.server.counters.add(bad_requests=1)
        self._status(code, message, json_answer)

    def _success(self, decoded: Decoded, json_answer: bool) -> None:
        response = ExportTraceServiceResponse()
        if decoded.n_rejected:
            response.partial_success.rejected_spans = decoded.n_rejected
            response.partial_success.error_message = decoded.reasons()
        self._send(200, response, json_answer)

    def _status(self, code: int, message: str, json_answer: bool,
                retry_after: int | None = None) -> None:
        grpc = {503: code_pb2.UNAVAILABLE, 500: code_pb2.INTERNAL}.get(
            code, code_pb2.INVALID_ARGUMENT)
        self._send(code, status_pb2.Status(code=grpc, message=message), json_answer,
                   retry_after)

    def _send(self, code: int, message: ExportTraceServiceResponse | status_pb2.Status,
              json_answer: bool, retry_after: int | None = None) -> None:
        if json_answer:
            body = json_format.MessageToJson(message, indent=None).encode()
        else:
            body = message.SerializeToString()
        self.send_response(code)
        self.send_header("Content-Type", JSON if json_answer else PROTOBUF)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
