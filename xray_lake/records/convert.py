"""Turn arbitrary user values into ones orjson can encode, never raising.

Two tools: `jsonable`, orjson's `default` hook for one value it cannot encode, and `sanitize`,
the slow rebuild of a whole value from plain types after orjson has failed on it (lone
surrogates, cycles, too deep, integers past 64 bits, odd keys). records/encode.py turns the
result into JSON text.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import enum
import uuid
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Final

__all__ = ["CYCLE_MARKER", "MAX_DEPTH_MARKER", "clean_str", "jsonable", "safe_repr", "sanitize"]

CYCLE_MARKER: Final = "<cycle>"
MAX_DEPTH_MARKER: Final = "<max depth>"
MAX_DEPTH: Final = 64

_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1  # orjson accepts the whole u64 range too

# Leaves orjson encodes natively and that hold nothing the sanitizer needs to walk into.
_NATIVE_LEAVES: Final = (datetime.datetime, datetime.date, datetime.time, uuid.UUID)
_KEY_LEAVES: Final = (bool, float, type(None), *_NATIVE_LEAVES)  # keys orjson accepts as-is


def safe_repr(value: object) -> str:
    """`repr(value)`, or a placeholder naming its type when repr itself raises."""
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def clean_str(text: str) -> str:
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
        return safe_repr(value)


def _convert_unguarded(value: object) -> object:
    if isinstance(value, type):
        return safe_repr(value)  # classes have __dict__ and pydantic classes have model_dump
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
    return safe_repr(value)


def _int_or_text(value: int) -> int | str:
    """An int orjson can encode (64 bits, signed or not) as itself, a larger one as its digits."""
    return value if _INT_MIN <= value <= _UINT_MAX else str(value)


def _key(key: object) -> object:
    kind = type(key)
    if kind is str:
        return clean_str(key)  # type: ignore[arg-type]
    if kind is int:
        return _int_or_text(key)  # type: ignore[arg-type]
    if isinstance(key, _KEY_LEAVES):
        return key  # orjson's OPT_NON_STR_KEYS form
    if isinstance(key, enum.Enum):
        return _key(key.value)
    try:
        return clean_str(str(key))
    except Exception:
        return clean_str(safe_repr(key))


def sanitize(value: object) -> object:
    """Rebuild `value` from plain types orjson surely accepts: cycles, depth and big ints cut."""
    return _walk(value, 0, set())


def _walk(value: object, depth: int, active: set[int]) -> object:
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return value
    if kind is str:
        return clean_str(value)  # type: ignore[arg-type]
    if kind is int:
        return _int_or_text(value)  # type: ignore[arg-type]
    if isinstance(value, _NATIVE_LEAVES):
        return value
    if isinstance(value, str):
        return clean_str(value)  # subclass: orjson encodes it natively
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
