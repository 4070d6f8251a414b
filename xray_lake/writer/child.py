"""The writer process: `python -m xray_lake.writer.child`, started by an application's first record.

It reads framed messages (writer/wire.py) from stdin and answers on the stdout it was
started with (sys.stdout is pointed at stderr, so a stray print cannot corrupt the channel):

- ("config", settings, writer_id, host, pid, version) first; answered by ("hello", pid);
- ("records", last_seq, [records]): submitted to the engine (writer/engine.py, the same one
  a thread writer runs); once they are durable (lake or spool) or counted as shed, the
  answer is ("ack", last_seq, stats);
- ("shed", reason, run_id, n): a record the application shed, charged to its run;
- ("flush", n): answered by ("flushed", n, ok, stats) after a real flush.

At the end of stdin (the application exited, or was killed) it writes everything it holds,
for as long as that makes progress (it gives up once neither lake nor spool took a record
for exit_timeout_s), and exits. It ignores SIGINT, SIGTERM and SIGHUP: those
go to the application's whole process group, and the application's end is what stops it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any


class _Channel:
    """The answering side: whole frames, one writer at a time; a closed pipe is ignored
    (the application is gone, and the records are still written)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.open = True

    def send(self, message: object) -> None:
        from xray_lake.writer import wire

        frame = wire.dumps(message)
        with self._lock:
            if not self.open:
                return
            try:
                wire.write(self._fd, frame)
            except OSError:
                self.open = False


class _Forward(logging.Handler):
    """The writer's warnings go to the application, which logs them with its own handlers."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__(logging.INFO)
        self._channel = channel
        self.listening = True

    def emit(self, record: logging.LogRecord) -> None:
        """To the application while it listens; to stderr (inherited) once it is gone."""
        try:
            if self.listening and self._channel.open:
                self._channel.send(("log", record.levelno, record.getMessage()))
            if not (self.listening and self._channel.open):
                text = record.getMessage().removeprefix("xray-lake: ")
                print(f"xray-lake (writer process {os.getpid()}): {text}", file=sys.stderr,
                      flush=True)
        except Exception:  # a log line must never stop the writer
            self.handleError(record)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    channel = _Channel(answer_fd)
    from xray_lake import config
    from xray_lake.writer import wire

    first = wire.read(0)
    if not (isinstance(first, tuple) and first and first[0] == "config"):
        return 2
    _, values, writer_id, host, pid, version = first
    settings = config.configure(**values)  # this process's own settings: the application's
    from xray_lake.writer.engine import Writer
    from xray_lake.writer.sinks import LakeSink

    logger = logging.getLogger("xray_lake")
    forward = _Forward(channel)
    logger.addHandler(forward)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    writer = Writer(settings, LakeSink(settings, writer_id), host=host, pid=pid, version=version)
    channel.send(("hello", os.getpid()))
    _serve(writer, channel)
    # The application closed our input: it is ending, or gone, and may never read another
    # answer. What is said from now on goes to the stderr it gave us.
    forward.listening = False
    step = max(settings.exit_timeout_s, 1.0)
    _write_out(writer, step)
    writer.close(0)
    left, _ = writer.buffered()
    if left:
        logger.warning("xray-lake: %d records were not written before exit (neither lake %s "
                       "nor spool %s took any record for %s s after the application ended); "
                       "they are lost", left, settings.root, settings.spool_dir, step)
    channel.send(("bye", writer.stats()))
    return 0


def _write_out(writer: Any, step: float) -> None:
    """Write everything held, for as long as that makes progress (records encoded or rows
    written): a backlog of any size lands; a lake and spool that take nothing for `step`
    seconds end the wait."""
    done = -1
    while not writer.flush(step):
        counts = writer.stats()  # records encoded, and rows written, both count as progress
        moved = (counts["runs_recorded"] + counts["stages_recorded"]
                 + counts["candidates_recorded"] + sum(counts["rows_written"].values())
                 + sum(counts["spooled_rows"].values()))
        if moved == done:
            return
        done = moved


def _serve(writer: Any, channel: _Channel) -> None:
    """Take messages until the end of stdin. The application keeps each batch until it is
    acknowledged, within its share of max_buffer_bytes (`client_hold`): once a quarter of
    that is waiting here, or when the application asks because a recording call waits for
    room, the writer writes at once instead of at its cadence (flush_interval_s, flush_at)."""
    from xray_lake.writer import wire
    from xray_lake.writer.outbox import client_hold, hurry_at

    behind_at = hurry_at(client_hold(writer.settings))
    waiting = [0]  # frame bytes received and not yet acknowledged
    lock = threading.Lock()  # this thread adds to it, the writer's worker takes from it

    def acknowledge(last: int, size: int) -> None:
        with lock:
            waiting[0] -= size
        channel.send(("ack", last, writer.stats()))

    while True:
        message: Any
        message, size = wire.read_sized(0)
        if message is None:
            return
        kind = message[0]
        if kind == "records":
            last = message[1]
            for record in message[2]:
                writer.submit(record)
            del message
            with lock:
                waiting[0] += size
                behind = waiting[0] >= behind_at
            writer.mark(lambda last=last, size=size: acknowledge(last, size))
            if behind:
                writer.hurry()
        elif kind == "hurry":  # the application waits for room
            writer.hurry()
        elif kind == "shed":
            _, reason, run_id, n = message
            writer.shed_run(reason, run_id, n)
        elif kind == "flush":
            number = message[1]
            threading.Thread(target=_flush, args=(writer, channel, number), daemon=True).start()


def _flush(writer: Any, channel: _Channel, number: int) -> None:
    ok = writer.flush(None)
    channel.send(("flushed", number, ok, writer.stats()))


if __name__ == "__main__":
    sys.exit(main())
