"""Turn arbitrary user values into JSON text, never raising, for the SDK's background writer."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import enum
import uuid
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    import pyarrow as pa

import orjson

from xray_lake.records.encoded import Encoded

__all__ = ["HEAD_KEY", "TRUNCATED_KEY", "cap_text", "encode_many", "to_json"]

TRUNCATED_KEY: Final = "$truncated"  # original byte length of a value that was cut
HEAD_KEY: Final = "$head"  # the first `cap` bytes of the original JSON, as text

CYCLE_MARKER: Final = "<cycle>"
MAX_DEPTH_MARKER: Final = "<max depth>"
MAX_DEPTH: Final = 64

# No OPT_NAIVE_UTC: a naive datetime stays naive rather than gaining a zone it never had.
# OPT_NON_STR_KEYS makes every dict slower to encode, so only the retry after a failure
# pays for it; int/float/bool/None/datetime/UUID/enum keys still come out as orjson's strings.
_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z
_RETRY_OPTIONS: Final = _OPTIONS | orjson.OPT_NON_STR_KEYS

_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1  # orjson accepts the whole u64 range too

# Leaves orjson encodes natively and that hold nothing the sanitizer needs to walk into.
_NATIVE_LEAVES: Final = (datetime.datetime, datetime.date, datetime.time, uuid.UUID)
_KEY_LEAVES: Final = (bool, float, type(None), *_NATIVE_LEAVES)  # keys orjson accepts as-is


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _clean_str(text: str) -> str:
    """orjson rejects lone surrogates; pair up what can be paired, replace the rest with U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _set_items(value: AbstractSet[object]) -> list[object]:
    # Sorted so equal sets encode identically; mixed types cannot be sorted, so keep iteration order.
    try:
        return sorted(value)  # type: ignore[type-var]
    except Exception:
        return list(value)


def _public_attrs(value: object) -> dict[str, object]:
    names: list[str] = []
    with contextlib.suppress(Exception):  # no __dict__, or one that refuses to be read
        names.extend(vars(value))
    for klass in type(value).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend((slots,) if isinstance(slots, str) else slots)
    attrs: dict[str, object] = {}
    for name in names:
        if not isinstance(name, str) or name.startswith("_") or name in attrs:
            continue
        try:
            attr = getattr(value, name)
        except Exception:
            continue  # unset slot, or a descriptor that raises
        if not callable(attr):
            attrs[name] = attr
    return attrs


def jsonable(value: object) -> object:
    """Map a value orjson cannot encode to something it can get closer to (the `default` hook).

    Never raises (the last resort is the repr), so one odd attribute does not push the whole
    value onto the slow sanitizer path.
    """
    try:
        return _convert_unguarded(value)
    except Exception:
        return _safe_repr(value)


def _convert_unguarded(value: object) -> object:
    if isinstance(value, type):
        return _safe_repr(value)  # classes have __dict__ and pydantic classes have model_dump
    if isinstance(value, Decimal):
        return str(value)  # a float would lose precision
    if isinstance(value, AbstractSet):
        return _set_items(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = value.tobytes() if isinstance(value, memoryview) else value
        return base64.b64encode(data).decode("ascii")
    if isinstance(value, float):
        return float(value)  # float subclasses are not native to orjson
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        try:
            return value.tolist()  # type: ignore[attr-defined]
        except Exception:
            pass
    # Looked up on the type so proxies with __getattr__ (mocks, lazy objects) are not fooled.
    if callable(getattr(type(value), "model_dump", None)):
        try:
            return value.model_dump(mode="json")  # type: ignore[attr-defined]
        except Exception:
            pass  # not pydantic v2 after all, or a broken model: fall through to attributes
    if isinstance(value, tuple):
        if callable(getattr(type(value), "_asdict", None)):
            try:
                return dict(value._asdict())  # type: ignore[attr-defined]  # namedtuple
            except Exception:
                pass
        return list(value)
    if dataclasses.is_dataclass(value):
        # Mirror orjson's native form (fields starting with "_" are skipped) for the sanitizer.
        try:
            return {
                f.name: getattr(value, f.name)
                for f in dataclasses.fields(value)
                if not f.name.startswith("_")
            }
        except Exception:
            pass
    if isinstance(value, enum.Enum):
        return value.value  # orjson's native form; only the sanitizer gets here
    if isinstance(value, Mapping):
        try:
            return dict(value)
        except Exception:
            pass
    if not callable(value):
        attrs = _public_attrs(value)
        if attrs:  # an empty dict says less than the repr (which at least names the type)
            return attrs
    return _safe_repr(value)


def _key(key: object) -> object:
    kind = type(key)
    if kind is str:
        return _clean_str(key)  # type: ignore[arg-type]
    if kind is int:
        return key if _INT_MIN <= key <= _UINT_MAX else str(key)  # type: ignore[operator]
    if isinstance(key, _KEY_LEAVES):
        return key  # orjson's OPT_NON_STR_KEYS form
    if isinstance(key, enum.Enum):
        return _key(key.value)
    try:
        return _clean_str(str(key))
    except Exception:
        return _clean_str(_safe_repr(key))


def _walk(value: object, depth: int, active: set[int]) -> object:
    """Rebuild `value` from plain types orjson surely accepts: cycles, depth and big ints cut."""
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return value
    if kind is str:
        return _clean_str(value)  # type: ignore[arg-type]
    if kind is int:
        return value if _INT_MIN <= value <= _UINT_MAX else str(value)  # type: ignore[operator]
    if isinstance(value, _NATIVE_LEAVES):
        return value
    if isinstance(value, str):
        return _clean_str(value)  # subclass: orjson encodes it natively
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return _walk(int(value), depth, active)
    if depth >= MAX_DEPTH:
        return MAX_DEPTH_MARKER
    ident = id(value)
    if ident in active:
        return CYCLE_MARKER
    active.add(ident)
    try:
        if kind is dict or kind is list:
            return _walk_container(value, depth, active)
        converted = jsonable(value)
        if type(converted) is dict or type(converted) is list:
            # The object and its dict/list form are one level, not two.
            return _walk_container(converted, depth, active)
        return _walk(converted, depth + 1, active)
    finally:
        active.discard(ident)


def _walk_container(value: object, depth: int, active: set[int]) -> object:
    if isinstance(value, dict):
        return {_key(k): _walk(v, depth + 1, active) for k, v in value.items()}
    assert isinstance(value, list)
    return [_walk(item, depth + 1, active) for item in value]


def _fallback(value: object, error: Exception) -> bytes:
    """Slow path once orjson has failed; sanitize then retry, else settle for a JSON string."""
    if "key" in str(error):  # a non-str dict key: orjson alone can still do it, far faster
        try:
            return orjson.dumps(value, default=jsonable, option=_RETRY_OPTIONS)
        except Exception:
            pass
    try:
        return orjson.dumps(_walk(value, 0, set()), default=jsonable, option=_RETRY_OPTIONS)
    except Exception:
        pass
    try:
        return orjson.dumps(_clean_str(_safe_repr(value)))
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
        text = _safe_repr(text)
    if len(text) <= cap:
        return text, False
    keep = max(cap, 0)
    return f"{text[:keep]}…[+{len(text) - keep} chars]", True
