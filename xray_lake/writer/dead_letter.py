"""Poison records: repair what Arrow refuses, and set aside (dead-letter) what cannot be repaired.

Two places can meet a record the writer cannot encode:

* building one record's rows (`records/build.py`): the record is set aside whole;
* building one partition's table from its buffered rows: values are repaired in place
  (lone surrogates escaped as `\\udXXX`, a non-string where a string column is expected
  stored as its `str()`), and when the table still cannot be built, each buffered unit (a
  run row, a stage row, one stage's candidate rows) that fails on its own, or that no
  table with the others can hold, is set aside and the rest is written.

Either way the writer never stalls on one record, and what is set aside is written as a
dead letter (storage/dead_letters.py) and counted (`xr.stats()["dead_lettered"]`).
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from xray_lake._internal_errors import warn_once
from xray_lake.records.pending import PendingRows
from xray_lake.records.schema import SCHEMAS
from xray_lake.records.values import escape_surrogates
from xray_lake.storage import dead_letters

MAX_BYTES = 256 << 20
"""Dead letters one writer writes at most; past it a poison record is dropped and counted."""
_MAX_DEPTH = 32
_MAX_ITEMS = 100_000  # per container: a dead letter stays a file a person can open
_TEXT_FIELDS = ("ids", "reason_label", "reason_text", "reason")

Unit = dict[str, Any] | PendingRows
"""What one buffered record is in a partition buffer: a run or stage row, or one stage's
candidate rows."""


# --- what a dead letter holds ----------------------------------------------------------------


def plain(value: object, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """`value` as plain JSON data, whatever it is: text exact, numbers and containers as they
    are, xray-lake's own slotted records and dataclasses field by field, bytes as text when
    they are UTF-8 (the packed JSON of a frozen candidate list), anything else as its type and
    repr. Never raises: a repr that raises is described instead."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    if id(value) in seen:
        return "<cycle>"
    inner = seen | {id(value)}
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            try:
                return {"$bytes_utf8": data.decode("utf-8")}
            except UnicodeDecodeError:
                return {"$bytes_hex": data.hex()}
        if isinstance(value, dict):
            return {_key(k): plain(v, depth + 1, inner)
                    for k, v in list(value.items())[:_MAX_ITEMS]}
        if isinstance(value, list | tuple | set | frozenset):
            items = list(value)[:_MAX_ITEMS]
            return [plain(v, depth + 1, inner) for v in items]
        if isinstance(value, pa.Array | pa.ChunkedArray):
            return plain(value.to_pylist(), depth + 1, inner)
        if type(value).__module__.startswith("xray_lake."):
            return _fields(value, depth, inner)
    except Exception as exc:  # a container that refuses to be read: describe it
        return {"$type": _type_name(value), "$error": _describe(exc)}
    return {"$type": _type_name(value), "$repr": _safe_repr(value)}


def _fields(value: object, depth: int, seen: frozenset[int]) -> dict[str, Any]:
    """xray-lake's own records: every slot or dataclass field, by name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
    else:
        names = [n for cls in type(value).__mro__ for n in getattr(cls, "__slots__", ())]
    out: dict[str, Any] = {"$type": _type_name(value)}
    for name in names:
        if hasattr(value, name):
            out[name] = plain(getattr(value, name), depth + 1, seen)
    return out


def _key(key: object) -> str:
    return key if isinstance(key, str) else _safe_repr(key)


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<{_type_name(value)} whose repr raised {_describe(exc)}>"


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def letter(record: object, exc: BaseException, *, table: str | None = None) -> dict[str, Any]:
    """The dead letter of `record` (an event, a row or candidate rows) that failed with `exc`:
    where it belongs, what failed, and the record itself."""
    stage = getattr(record, "spec", None)
    if isinstance(record, dict):
        run_id, name = record.get("run_id"), record.get("name")
    elif isinstance(record, PendingRows):
        run_id, name = record.run_id, record.stage[1]
    else:
        run_id, name = getattr(record, "run_id", None), getattr(stage, "name", None)
    return {
        "error": _describe(exc),
        "traceback": plain(traceback.format_exception(exc)[-6:]),
        "table": table,
        "label": plain(getattr(record, "label", None)),
        "date": plain(getattr(record, "date", None)),
        "run_id": plain(run_id),
        "stage": plain(name),
        "stage_type": plain(getattr(stage, "recorded_type", None)),
        "record": plain(record),
    }


def unit_counts(unit: Unit) -> tuple[str | None, int, int]:
    """(run id, records, candidate rows) of one buffered unit, as the counters count them."""
    if isinstance(unit, PendingRows):
        found: object = unit.run_id
        records = n = unit.num_rows
    else:
        found, records, n = unit.get("run_id"), 1, 0
    return (found if isinstance(found, str) else None), records, n


class DeadLetters:
    """Where one writer sets records aside: the dead-letter folder beside its lake's spool."""

    def __init__(self, spool_dir: str, lake_root: str) -> None:
        self._spool_dir, self._root = spool_dir, lake_root
        self._seq = 0
        self._bytes = 0

    def put(self, record: object, exc: BaseException, table: str | None = None) -> bool:
        """Write `record`'s dead letter; False when it cannot be written (the folder refuses,
        or this writer already set aside `MAX_BYTES`): the caller then drops and counts it."""
        try:
            if self._bytes >= MAX_BYTES:
                raise OSError(f"this writer has set aside {MAX_BYTES >> 20} MiB of dead letters")
            target = dead_letters.folder(self._spool_dir, self._root)
            path, size = dead_letters.write(target, letter(record, exc, table=table),
                                            seq=self._seq)
        except Exception as failed:
            warn_once("dead-letter-failed", "xray-lake: a record that cannot be encoded (%s) "
                      "could not be set aside either (%s); it is dropped, counted in "
                      "xr.stats()['dropped']['encode_error']", _describe(exc), _describe(failed))
            return False
        self._seq += 1
        self._bytes += size
        warn_once("dead-letter", "xray-lake: a record that cannot be encoded (%s) was set aside "
                  "as %s; `xray-lake doctor` lists such records, xr.stats()['dead_lettered'] "
                  "counts them, and the rest is written as usual", _describe(exc), path)
        return True


def mark_incomplete(runs: list[dict[str, Any]], run_id: str | None, stages: int,
                    candidates: int) -> bool:
    """Say on a buffered run row that part of its run was set aside; False when the run's row
    is not among `runs` (not built yet: the writer charges the run instead)."""
    for row in runs:
        if run_id is not None and row.get("run_id") == run_id:
            row["n_stages_shed"] = (row.get("n_stages_shed") or 0) + stages
            row["n_candidates_shed"] = (row.get("n_candidates_shed") or 0) + candidates
            row["status"] = "incomplete"
            row["error_message"] = (
                f"xray-lake set aside {row['n_stages_shed']} of {row.get('n_stages')} stage "
                f"records ({row['n_candidates_shed']} candidate rows) of this run that could not "
                "be encoded; `xray-lake doctor` lists them")
            return True
    return False


# --- repairing and isolating a partition's rows ------------------------------------------


def mend(units: list[Any], name: str, build: Callable[[Sequence[Any]], object]
         ) -> list[tuple[Any, Exception]]:
    """Make `units` (the buffered rows of table `name`) buildable by `build`, in place.

    First every value is repaired (surrogates escaped, non-strings in string columns as their
    `str()`); then, if `build(units)` still fails, the units that fail alone, or that no
    table with the ones kept can hold, are removed and returned with their error.
    """
    if _repair(units, name):
        warn_once(f"repaired:{name}", "xray-lake: some %s values could not be stored as they "
                  "were (lone surrogates, or non-text where text is expected); they are "
                  "stored escaped (\\udXXX) or as their str()", name)
    if _failure(build, units) is None:
        return []
    set_aside: list[tuple[Any, Exception]] = []
    alone: list[Any] = []
    for unit in units:  # what cannot be stored even alone
        failed = _failure(build, [unit])
        if failed is None:
            alone.append(unit)
        else:
            set_aside.append((unit, failed))
    kept: list[Any] = []
    if _failure(build, alone) is None:
        kept = alone
    else:  # units that no one table holds together (rare): keep each that fits the others
        for unit in alone:
            failed = _failure(build, [*kept, unit])
            if failed is None:
                kept.append(unit)
            else:
                set_aside.append((unit, failed))
    units[:] = kept
    return set_aside


def _failure(build: Callable[[Sequence[Any]], object], units: Sequence[Any]) -> Exception | None:
    try:
        build(units)
    except MemoryError:
        raise
    except Exception as exc:
        return exc
    return None


def _repair(units: list[Any], name: str) -> bool:
    """Repair every unit's values in place; True when anything changed."""
    changed = False
    if name == "candidates":
        for rows in units:
            run_id = _text(rows.run_id)
            if run_id is not rows.run_id:
                rows.run_id = run_id
                changed = True
            for attr in ("stage", *_TEXT_FIELDS):
                values = getattr(rows, attr)
                fixed = tuple(map(_text, values))
                if any(a is not b for a, b in zip(fixed, values, strict=True)):
                    setattr(rows, attr, fixed)
                    changed = True
        return changed
    text = {f.name for f in SCHEMAS[name] if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)}
    for row in units:
        for key, value in row.items():
            if isinstance(value, dict):  # a map column: its keys are text
                keys = [_text(k) for k in value]
                if any(a is not b for a, b in zip(keys, value, strict=True)):
                    row[key] = dict(zip(keys, value.values(), strict=True))
                    changed = True
            elif key in text:
                mended = _text(value)
                if mended is not value:
                    row[key] = mended
                    changed = True
    return changed


def _text(value: object) -> object:
    """A value of a text column as Arrow can store it: str (surrogates escaped) or None; a
    value whose str() raises stays as it is (its unit is then set aside)."""
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            return value
    return escape_surrogates(value)
