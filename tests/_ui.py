"""A web view of a lake served on 127.0.0.1 (a free port) for the duration of a test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

START_TIMEOUT_S = 20


@contextmanager
def serving(root: str, *, check_host: bool = True) -> Iterator[str]:
    """Serve `root` with uvicorn in a thread; yields the base URL (`http://127.0.0.1:PORT`)."""
    import uvicorn

    from xray_lake.ui.app import LOOPBACK_HOSTS, create_app
    from xray_lake.ui.serve import bind

    sock = bind("127.0.0.1", 0)
    app = create_app(root, allowed_hosts=list(LOOPBACK_HOSTS) if check_host else None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()
