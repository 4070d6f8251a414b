"""Running a collector: the HTTP receiver, its trace buffer and the SDK writer, started and
stopped together (used by `xray-lake collect` and by tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import xray_lake as xr
from xray_lake.otlp.buffer import Timing, TraceBuffer
from xray_lake.otlp.decode import Limits, SpanData
from xray_lake.otlp.mapping import Options, record_trace
from xray_lake.otlp.server import Collector


@dataclass
class Running:
    """A collector serving on its own thread; `close()` writes what is buffered."""

    server: Collector
    buffer: TraceBuffer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self, timeout: float | None = 60.0) -> bool:
        """Stop taking requests, write every buffered trace, flush the lake; True when all
        of it is durable (xr.flush's answer)."""
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()
        self.buffer.close()
        return xr.flush(timeout)


def sink(options: Options) -> Callable[[list[SpanData]], None]:
    def write(spans: list[SpanData]) -> None:
        record_trace(spans, options)

    return write


def start(host: str = "127.0.0.1", port: int = 4318, *, timing: Timing | None = None,
          options: Options | None = None, limits: Limits | None = None,
          max_spans: int = 200_000) -> Running:
    """Bind, start the flusher and serve in a background thread; port 0 picks a free port."""
    buffer = TraceBuffer(sink(options or Options()), timing, max_spans=max_spans)
    server = Collector(buffer, host, port, limits)
    buffer.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="xray-lake-otlp-server", daemon=True)
    thread.start()
    return Running(server, buffer, thread)
