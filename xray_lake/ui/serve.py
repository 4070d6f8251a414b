"""Bind the web view's socket, say where it is, and serve it with uvicorn until interrupted.

The socket is bound before the URL is printed, so `--port 0` prints the port the system
chose, and a port in use fails before anything claims to be listening.
"""

from __future__ import annotations

import socket
import sys
from typing import TextIO

from xray_lake.loopback import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); OSError names the address when it fails."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    return f"http://{shown}:{port}/"


def serve(root: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
    """Serve the lake at `root` read-only until Ctrl-C; prints the URL (and a warning when
    the address is reachable from other machines)."""
    import uvicorn

    from xray_lake.ui.app import LOOPBACK_HOSTS, create_app

    loopback = is_loopback(host)
    # Host headers are checked on IPv4 loopback (DNS rebinding); starlette's check cannot
    # read an IPv6 Host header, and other addresses are reachable under any name.
    ipv4_loopback = loopback and ":" not in host
    app = create_app(root, allowed_hosts=list(LOOPBACK_HOSTS) if ipv4_loopback else None)
    sock = bind(host, port)
    if not loopback:
        err.write(f"warning: listening on {host}, not on loopback: anyone who can reach this "
                  "machine on that address can read the whole lake (runs, inputs, outputs, "
                  "candidates) through this page. Use --host 127.0.0.1 unless you mean it.\n")
        err.flush()
    out.write(f"xray-lake ui: serving the lake at {root} read-only on {url(sock, host)}\n"
              "(Ctrl-C stops it)\n")
    out.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
