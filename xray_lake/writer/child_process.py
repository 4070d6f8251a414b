"""One writer process as the application sees it: started, fed, listened to, closed.

The sender (writer/sender.py) decides what to send and when to restart; this module
only owns the process, its two pipes and the thread that reads its answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xray_lake.writer import wire

logger = logging.getLogger("xray_lake")
_live: weakref.WeakSet[ChildProcess] = weakref.WeakSet()


class ChildProcess:
    """`python -m xray_lake.writer.child`, the same interpreter, given `config` first.

    Raises OSError (or ValueError) from `start()` when it cannot be started or fed, and from
    `send()` once it has died. `on_answer(message)` runs on the reading thread for each
    answer; `on_gone()` once its answers end (it exited, or was killed).
    """

    def __init__(self, config: tuple[Any, ...], on_answer: Callable[[Any], None],
                 on_gone: Callable[[], None]) -> None:
        self._config = config
        self._on_answer = on_answer
        self._on_gone = on_gone
        self._proc: subprocess.Popen[bytes] | None = None
        self.gone = threading.Event()
        self.started = threading.Event()  # it said hello: imported, configured, listening
        _live.add(self)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> None:
        env = dict(os.environ)
        # the writer process imports this copy of xray_lake, wherever it came from
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent,
                                                        env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen([sys.executable, "-m", "xray_lake.writer.child"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                      close_fds=True, env=env)
        threading.Thread(target=self._read_loop, daemon=True, name="xray-lake-acks").start()
        self.send(wire.dumps(self._config))

    def send(self, frame: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise OSError("the writer process is not running")
        wire.write(proc.stdin.fileno(), frame)

    def kill(self) -> None:
        """SIGKILL it (it never said hello: not our writer, or stuck starting)."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()

    def close_input(self) -> None:
        """The end of its stdin: the writer process writes what it holds and exits."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            fd = proc.stdout.fileno()
            while True:
                message = wire.read(fd)
                if message is None:
                    break
                if message[0] == "hello":  # type: ignore[index]
                    self.started.set()
                    continue
                self._on_answer(message)
        except Exception:
            logger.debug("xray-lake: reading the writer process's answers failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                proc.stdout.close()
                proc.wait(1.0)
            self.gone.set()
            self._on_gone()

    def forget_after_fork(self) -> None:
        """In a forked child: close this copy of the parent's pipes, never write to them."""
        proc = self._proc
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


def _after_fork_in_child() -> None:
    for child in list(_live):
        child.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
