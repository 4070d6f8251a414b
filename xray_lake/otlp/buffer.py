"""Spans arrive in batches, a trace's spans often across several requests: the buffer holds
them per trace id and hands each trace over whole, once.

The rule: a trace is written once its root span (the one with no parent) has arrived and no
span of it has arrived for `idle_s` (children end, and are exported, before their root: the
wait is for stragglers of concurrent branches); a trace whose root never comes is written
`max_wait_s` after its first span; at shutdown every trace left is written. A span for a
trace already written is refused as late (its trace ids are remembered, the last
`remember` of them), like a span already buffered (duplicate).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xray_lake.otlp.decode import SpanData

log = logging.getLogger("xray_lake.otlp")

Sink = Callable[[list[SpanData]], None]


class Busy(Exception):
    """The buffer is full (the lake is behind): the client should retry later."""


@dataclass(slots=True)
class _Trace:
    spans: dict[str, SpanData] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0
    has_root: bool = False


@dataclass(frozen=True, slots=True)
class Timing:
    """When a buffered trace is written: see the module docstring."""

    idle_s: float = 1.0
    max_wait_s: float = 30.0


class TraceBuffer:
    """Thread-safe per-trace buffer with a flusher thread that hands whole traces to `sink`.

    Bounded by `max_spans` and `max_bytes` (spans as encoded): past either, `add` raises Busy
    and the server answers 503, which OTLP exporters retry."""

    def __init__(self, sink: Sink, timing: Timing | None = None, *,
                 max_spans: int = 200_000, max_bytes: int = 1 << 30, remember: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._timing = timing or Timing()
        self._max_spans = max_spans
        self._max_bytes = max_bytes
        self._n_bytes = 0
        self._remember = remember
        self._clock = clock
        self._lock = threading.Lock()
        self._traces: dict[str, _Trace] = {}
        self._written: OrderedDict[str, None] = OrderedDict()
        self._n_spans = 0
        self._stop = threading.Event()
        self._closed = False  # past close(): add() refuses (503), so no span lands unwritten
        self._thread: threading.Thread | None = None
        self.counters: Counter[str] = Counter()

    # --- input ------------------------------------------------------------------------

    def add(self, spans: Sequence[SpanData]) -> Counter[str]:
        """Buffer `spans`; returns the refused ones by reason (duplicate, late).

        Raises Busy, taking none of them, when they would overfill the buffer."""
        refused: Counter[str] = Counter()
        now = self._clock()
        with self._lock:
            if self._closed:
                raise Busy("the collector is shutting down; retry later")
            size = sum(span.size for span in spans)
            if self._n_spans and (self._n_spans + len(spans) > self._max_spans
                                  or self._n_bytes + size > self._max_bytes):
                self.counters["busy_requests"] += 1
                raise Busy(f"{self._n_spans:,} spans ({self._n_bytes:,} bytes) wait to be "
                           f"written (limits {self._max_spans:,} spans, {self._max_bytes:,} "
                           "bytes); retry later")
            for span in spans:
                if span.trace_id in self._written:
                    refused["late span: its trace was already written (raise --idle if "
                            "spans of one trace arrive further apart)"] += 1
                    continue
                trace = self._traces.get(span.trace_id)
                if trace is None:
                    trace = self._traces[span.trace_id] = _Trace(first=now)
                if span.span_id in trace.spans:
                    refused["duplicate span (already received)"] += 1
                    continue
                trace.spans[span.span_id] = span
                trace.last = now
                trace.has_root = trace.has_root or span.parent_id is None
                self._n_spans += 1
                self._n_bytes += span.size
            self.counters["spans_accepted"] += len(spans) - sum(refused.values())
            self.counters["spans_refused"] += sum(refused.values())
        return refused

    @property
    def n_spans(self) -> int:
        with self._lock:
            return self._n_spans

    # --- output -----------------------------------------------------------------------

    def take_due(self, everything: bool = False) -> list[list[SpanData]]:
        """Remove and return the traces due by the rule (all of them with `everything`)."""
        now = self._clock()
        idle, max_wait = self._timing.idle_s, self._timing.max_wait_s
        with self._lock:
            due = [tid for tid, t in self._traces.items()
                   if everything or (t.has_root and now - t.last >= idle)
                   or now - t.first >= max_wait]
            out = []
            for tid in due:
                trace = self._traces.pop(tid)
                self._n_spans -= len(trace.spans)
                self._n_bytes -= sum(span.size for span in trace.spans.values())
                self._written[tid] = None
                out.append(list(trace.spans.values()))
            while len(self._written) > self._remember:
                self._written.popitem(last=False)
        return out

    def write_due(self, everything: bool = False) -> int:
        """Hand the due traces to the sink; a trace the sink fails on is logged and counted."""
        traces = self.take_due(everything)
        for spans in traces:
            try:
                self._sink(spans)
                self.counters["traces_written"] += 1
            except Exception as err:
                self.counters["traces_failed"] += 1
                log.warning("xray-lake collect: trace %s could not be recorded: %s: %s",
                            spans[0].trace_id, type(err).__name__, err)
        return len(traces)

    def start(self) -> None:
        """Start the flusher thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="xray-lake-otlp-flusher",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        tick = max(min(self._timing.idle_s / 4, 0.25), 0.01)
        while not self._stop.wait(tick):
            self.write_due()

    def close(self) -> None:
        """Refuse new spans, stop the flusher and write every trace left (idempotent). A
        request still being handled either got its spans in before (written here) or is
        answered 503, which exporters retry: none is acknowledged and then lost."""
        with self._lock:
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.write_due(everything=True)
