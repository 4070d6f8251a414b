"""What crosses the pipes between an application and its writer process: framed pickles.

Only plain data crosses: builtin containers and scalars, dates, decimals, UUIDs, numpy
values and xray-lake's own classes. Unpickling those in the writer process imports none of
the application's modules (which could be heavy, or start things when imported). A record
holding any other object (a dataclass or pydantic candidate, say) is written by a thread of
the application instead; see `Foreign`.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from typing import Any

from xray_lake.config import Settings
from xray_lake.records.encode import to_json
from xray_lake.records.encoded import Encoded
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.records.options import CapsInForce

_HEAD = struct.Struct("!I")
MAX_FRAME = 2**31  # a frame is one batch of records; far below this in practice
# Modules whose classes the writer process may unpickle.
_PLAIN = frozenset({"builtins", "collections", "datetime", "decimal", "uuid", "numpy",
                    "copyreg", "_codecs", "array", "fractions", "pathlib", "enum"})
_PLAIN_PACKAGES = ("xray_lake.", "numpy.", "collections.", "pathlib.")


class Foreign(Exception):
    """A record holds an object of the application's own classes (not sent to the writer
    process, which must not import application code)."""


class _PlainPickler(pickle.Pickler):
    """Pickles plain data only; raises Foreign for anything else.

    `reducer_override` is not called for exact dicts, lists, strs and numbers, so plain
    candidate lists pickle at full C speed.
    """

    def reducer_override(self, obj: Any) -> Any:
        module = getattr(type(obj), "__module__", "") or ""
        if module in _PLAIN or module.startswith(_PLAIN_PACKAGES):
            return NotImplemented
        raise Foreign(f"{module}.{type(obj).__qualname__}")


def dumps(message: object) -> bytes:
    """One message as a frame (length prefix + pickle); raises Foreign or PicklingError."""
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    _PlainPickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    frame = out.getbuffer()
    _HEAD.pack_into(frame, 0, len(frame) - _HEAD.size)
    del frame
    return out.getvalue()


def read(fd: int) -> object | None:
    """The next message from `fd`; None at end of stream (the other side is gone)."""
    return read_sized(fd)[0]


def read_sized(fd: int) -> tuple[object | None, int]:
    """The next message and its frame's size in bytes; (None, 0) at end of stream."""
    head = _read_exactly(fd, _HEAD.size)
    if head is None:
        return None, 0
    (size,) = _HEAD.unpack(head)
    body = _read_exactly(fd, size)
    if body is None:
        return None, 0
    message: object = pickle.loads(body)
    return message, size


def write(fd: int, frame: bytes | memoryview) -> None:
    """Write a whole frame (the pipe may take it in parts); raises OSError when closed."""
    view = memoryview(frame)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode_raw_values(event: RunEvent | StageEvent, settings: Settings) -> None:
    """Encode (and cut) a record's raw values in place, as the writer would.

    A run's input or a stage's arguments can hold anything, e.g. a whole catalog; only the
    first `raw_cap_bytes` (or the stage's own cap) of its JSON are kept. Encoding them here
    sends those bytes, not the objects, and frees the caller's objects sooner.
    """
    if isinstance(event, StageEvent):
        cap = CapsInForce(settings, event.spec.caps).raw  # the cap records/build.py applies
        inputs, outputs = event.inputs, event.outputs
        if inputs.raw:
            inputs.raw = _encoded(inputs.raw, cap)
        if outputs.raw is not None:
            outputs.raw = _encoded(outputs.raw, cap)
        return
    if event.attributes:
        event.attributes = _encoded(event.attributes, settings.raw_cap_bytes)
    if event.input is not None:
        event.input = _encoded(event.input, settings.raw_cap_bytes)
    if event.output is not None:
        event.output = _encoded(event.output, settings.raw_cap_bytes)


def _encoded(value: object, cap: int) -> Any:
    """An Encoded standing where the record's type says a dict is (the writer only ever
    passes it on to `to_json`)."""
    return Encoded(*to_json(value, cap), cap)
