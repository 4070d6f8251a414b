"""Turn arbitrary user values into JSON text under a size cap, never raising, for the writer.

orjson does the encoding; what it cannot encode goes through records/convert.py. A value over
its cap becomes a marked head of its JSON, and long containers are encoded only about as far
as the cap reaches.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    import pyarrow as pa

import orjson

from xray_lake.records.convert import (
    CYCLE_MARKER,
    MAX_DEPTH_MARKER,
    clean_str,
    jsonable,
    safe_repr,
    sanitize,
)
from xray_lake.records.encoded import Encoded

# The markers can appear in the JSON text; `jsonable` is the `default` hook for other encoders.
__all__ = ["CYCLE_MARKER", "HEAD_KEY", "MAX_DEPTH_MARKER", "TRUNCATED_KEY", "cap_text",
           "encode_many", "jsonable", "to_json"]

TRUNCATED_KEY: Final = "$truncated"  # original byte length of a value that was cut
HEAD_KEY: Final = "$head"  # the first `cap` bytes of the original JSON, as text

# No OPT_NAIVE_UTC: a naive datetime stays naive rather than gaining a zone it never had.
# OPT_NON_STR_KEYS makes every dict slower to encode, so only the retry after a failure
# pays for it; int/float/bool/None/datetime/UUID/enum keys still come out as orjson's strings.
_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z
_RETRY_OPTIONS: Final = _OPTIONS | orjson.OPT_NON_STR_KEYS


def _fallback(value: object, error: Exception) -> bytes:
    """Slow path once orjson has failed; sanitize then retry, else settle for a JSON string."""
    if "key" in str(error):  # a non-str dict key: orjson alone can still do it, far faster
        try:
            return orjson.dumps(value, default=jsonable, option=_RETRY_OPTIONS)
        except Exception:
            pass
    try:
        return orjson.dumps(sanitize(value), default=jsonable, option=_RETRY_OPTIONS)
    except Exception:
        pass
    try:
        return orjson.dumps(clean_str(safe_repr(value)))
    except Exception:
        return orjson.dumps(f"<unencodable {type(value).__name__}>")


def _truncated(encoded: bytes, cap: int, length: int | None = None) -> bytes:
    head = encoded[: max(cap, 0)].decode("utf-8", errors="ignore")
    return orjson.dumps({TRUNCATED_KEY: len(encoded) if length is None else length,
                         HEAD_KEY: head})


def _encode(value: object) -> bytes:
    try:
        return orjson.dumps(value, default=jsonable, option=_OPTIONS)
    except Exception as error:
        return _fallback(value, error)


# Containers longer than this are encoded one element at a time against the cap, so a cut
# value costs about `cap` bytes of encoding, not its whole size (a run's input that holds a
# 20,000-item catalog is read up to the cap, not encoded whole and then cut).
_LONG: Final = 256
_WALK_DEPTH: Final = 4  # how deep the cap-bounded walk goes before encoding values whole
_CONTAINERS: Final = (dict, list, tuple)


def _has_long(value: object, depth: int = 0) -> bool:
    """Whether a long container sits where `_bounded` would walk: without one, encoding the
    value whole is the fast path (one orjson call)."""
    kind = type(value)
    if kind not in _CONTAINERS:
        return False
    if len(value) > _LONG:  # type: ignore[arg-type]
        return True
    if depth >= 1:
        return False
    children: Iterable[object] = value.values() if isinstance(value, dict) else value  # type: ignore[assignment]
    return any(type(c) in _CONTAINERS and _has_long(c, depth + 1) for c in children)


def _bounded(value: object, budget: int, depth: int) -> tuple[bytes, int | None]:
    """Encode `value`, stopping soon after `budget` bytes inside long containers.

    Returns (JSON, None) when the value was encoded whole, byte for byte what `_encode`
    gives; (a prefix of it, estimated whole length) when encoding stopped early. The estimate
    extrapolates from the elements encoded so far.
    """
    kind = type(value)
    walk = kind in _CONTAINERS and depth < _WALK_DEPTH and (
        depth < 2 or len(value) > _LONG)  # type: ignore[arg-type]
    if walk and kind is dict and not all(type(k) is str for k in value):  # type: ignore[attr-defined]
        walk = False  # orjson's non-str key handling applies: encode it whole
    if not walk:
        return _encode(value), None
    if kind is dict:
        return _bounded_items(list(value.items()), budget, depth, b"{", b"}")  # type: ignore[attr-defined]
    return _bounded_items(value, budget, depth, b"[", b"]")  # type: ignore[arg-type]


def _bounded_items(items: Sequence[object], budget: int, depth: int, opening: bytes,
                   closing: bytes) -> tuple[bytes, int | None]:
    """The elements of a list (or a dict's (key, value) pairs) against `budget`: the first
    one on its own, then slices of a list in one orjson call each, sized by the first."""
    parts: list[bytes] = []
    used = 2
    n = len(items)
    i = 0
    is_dict = opening == b"{"
    while i < n:
        if is_dict or i == 0:
            if is_dict:
                pair = cast("tuple[object, object]", items[i])
                prefix, child = _encode(pair[0]) + b":", pair[1]
            else:
                prefix, child = b"", items[i]
            encoded, estimate = _bounded(child, budget - used - len(prefix), depth + 1)
            part, count = prefix + encoded, 1
            if estimate is not None:  # that element was cut: the rest are estimated like it
                whole = used + len(prefix) + estimate
                per = (used - 2) / i if i else len(prefix) + estimate
                return (opening + b",".join([*parts, part]) + closing,
                        int(whole + per * (n - i - 1)))
        else:
            per = (used - 2) / i
            count = max(1, min(n - i, int((budget - used) / max(per, 1.0)) + 1))
            part = _encode(list(items[i:i + count]))[1:-1]
        parts.append(part)
        used += len(part) + 1
        i += count
        if used > budget and i < n:
            return opening + b",".join(parts) + closing, int(used * n / i)
    return opening + b",".join(parts) + closing, None


def to_json(value: object, cap: int | None = None) -> tuple[str, bool]:
    """One value -> (JSON text, was_truncated). Never raises.

    Output longer than `cap` bytes becomes ``{"$truncated": <byte length>, "$head": <text>}``;
    when a long list or dict was cut before it was encoded whole, the byte length is an
    estimate (extrapolated from the elements encoded).
    """
    if type(value) is Encoded:
        if value.cap == cap:
            return value.text, value.cut
        value = orjson.loads(value.text)  # encoded under another cap: cut again under this one
    try:
        if cap is None or not _has_long(value):
            encoded, estimate = _encode(value), None
        else:
            encoded, estimate = _bounded(value, cap, 0)
        if cap is not None and estimate is not None:
            return _truncated(encoded, cap, estimate).decode("utf-8"), True
        if cap is not None and len(encoded) > cap:
            return _truncated(encoded, cap).decode("utf-8"), True
        return encoded.decode("utf-8"), False
    except Exception:  # only a nonsensical `cap` or MemoryError can get here
        return orjson.dumps(f"<unencodable {type(value).__name__}>").decode("utf-8"), False


def encode_many(
    values: Sequence[object], cap: int | None = None
) -> tuple[pa.LargeStringArray, int]:
    """Each value -> one JSON text in a pyarrow large_string array; returns (array, n_truncated).

    Never raises. Bytes go into one growing buffer with an int64 offsets array, and Arrow wraps
    both without copying: keeping thousands of separate orjson results alive at once is several
    times slower than the whole encode.
    """
    import pyarrow as pa  # the writer's: the SDK's hot path imports no pyarrow

    buf = bytearray()
    offsets = array("q", [0])
    n_truncated = 0
    dumps: Callable[..., bytes] = orjson.dumps
    default = jsonable
    options = _OPTIONS
    append_offset = offsets.append
    try:
        if cap is None:
            for value in values:
                try:
                    buf += dumps(value, default=default, option=options)
                except Exception as error:
                    buf += _fallback(value, error)
                append_offset(len(buf))
        else:
            for value in values:
                try:
                    encoded = dumps(value, default=default, option=options)
                except Exception as error:
                    encoded = _fallback(value, error)
                if len(encoded) > cap:
                    encoded = _truncated(encoded, cap)
                    n_truncated += 1
                buf += encoded
                append_offset(len(buf))
    except Exception:
        pass  # iterating `values` itself failed: keep the elements encoded so far
    n = len(offsets) - 1
    result = pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)]
    )
    return result, n_truncated


def cap_text(text: str | None, cap: int | None) -> tuple[str | None, bool]:
    """Plain text (not JSON) capped to `cap` characters: cut text ends with a marker '…[+N chars]'.

    The marker comes after the `cap` kept characters, so a reader sees how much was lost.
    """
    if text is None or cap is None:
        return text, False
    if not isinstance(text, str):
        text = safe_repr(text)
    if len(text) <= cap:
        return text, False
    keep = max(cap, 0)
    return f"{text[:keep]}…[+{len(text) - keep} chars]", True
