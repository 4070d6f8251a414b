"""The current run and stage (contextvars), and the begin/end logic every front end shares.

Everything here runs on the caller's thread, so it does the least it can: read clocks, take
one shallow copy of the candidate list that supplies payloads, and queue an event.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token

from xray_lake._internal_errors import report, warn_once
from xray_lake.config import get_settings
from xray_lake.records.events import RunEvent, StageEvent, StageSpec
from xray_lake.records.packed import pack, pack_helpers
from xray_lake.records.results import HELPER_OF, RESULT_HELPERS, unwrap
from xray_lake.records.snapshot import snapshot
from xray_lake.records.values import escape_surrogates, read_field
from xray_lake.storage.layout import label_is_shortened
from xray_lake.writer.process import get_writer

FULL_LABEL_ATTRIBUTE = "xray.label"

_clock = time.time
_perf = time.perf_counter


class RunState:
    """A run in progress, shared by its stages through a contextvar."""

    __slots__ = ("attributes", "date", "implicit", "input", "label", "n_stages", "run_id",
                 "started_at", "t0", "token")

    def __init__(self, label: str, run_id: str, attributes: dict[str, object] | None,
                 input: object, implicit: bool) -> None:
        self.label = label
        self.run_id = run_id
        self.attributes = attributes
        self.input = input
        self.implicit = implicit
        self.n_stages = 0
        self.started_at = _clock()
        self.t0 = _perf()  # right after the wall clock: finished_at = started_at + duration
        self.date = time.strftime("%Y-%m-%d", time.gmtime(self.started_at))
        self.token: Token[RunState | None] | None = None


_RUN: ContextVar[RunState | None] = ContextVar("xray_lake_run", default=None)
_STAGE: ContextVar[str | None] = ContextVar("xray_lake_stage", default=None)

# Ids are a random per-process prefix plus a counter: unique across processes and hosts,
# and no os.urandom call per run (one call can take milliseconds on some VMs).
_prefix = os.urandom(4).hex()
_run_prefix = os.urandom(8).hex()
_counter = itertools.count(1)


def _reseed_after_fork() -> None:
    global _prefix, _run_prefix, _counter
    _prefix = os.urandom(4).hex()
    _run_prefix = os.urandom(8).hex()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed_after_fork)


def new_stage_id() -> str:
    return f"{_prefix}{next(_counter):x}"


def new_run_id() -> str:
    return f"{_run_prefix}{next(_counter):016x}"


def current_run() -> RunState | None:
    return _RUN.get()


def error_fields(exc: BaseException) -> tuple[str, str]:
    """(message, code): the code is the exception's `code`/`error_code` attribute if it has one."""
    code = getattr(exc, "error_code", None) or getattr(exc, "code", None)
    name = type(exc).__qualname__
    message = str(exc) or name
    return message, (f"{name}:{code}" if isinstance(code, str | int) else name)


# --- runs --------------------------------------------------------------------------------


def begin_run(label: str, run_id: str | None, attributes: dict[str, object] | None = None,
              input: object = None, implicit: bool = False) -> RunState:
    label = escape_surrogates(label)  # it names a folder: UTF-8 must encode it
    if label_is_shortened(label):  # the folder holds a prefix + hash: keep the whole label
        attributes = {**(attributes or {}), FULL_LABEL_ATTRIBUTE: label}
        warn_once(f"long-label:{label}",
                  "xray-lake: label %.60r… is too long for a folder name; it is stored "
                  "shortened (prefix + '~' + hash) and whole in runs.attributes[%r]",
                  label, FULL_LABEL_ATTRIBUTE)
    run = RunState(label, run_id or new_run_id(), attributes, input, implicit)
    run.token = _RUN.set(run)
    return run


def end_run(run: RunState, output: object, exc: BaseException | None) -> None:
    """Close the run: restore the previous one and queue its record (never raises).

    The arguments come in `end_stage`'s order, so that one wrapper finishes either."""
    try:
        if run.token is not None:
            _RUN.reset(run.token)
            run.token = None
    except ValueError:  # reset from another context (e.g. a generator closed elsewhere)
        _RUN.set(None)
    try:
        if not get_settings().enabled:
            return
        duration_ms = (_perf() - run.t0) * 1000.0
        message, code = error_fields(exc) if exc is not None else (None, None)
        get_writer().submit(RunEvent(
            run.run_id, run.label, run.date, run.started_at, run.started_at + duration_ms / 1000,
            duration_ms, "failure" if exc is not None else "success", message, code,
            run.n_stages, run.attributes, run.input, output,
        ))
    except Exception as err:
        report("run.end", err)


# --- stages ------------------------------------------------------------------------------


class StageCall:
    """One execution of a stage, from begin() to end(); holds what end() needs."""

    __slots__ = ("active_ms", "event", "in_list", "run", "run_token", "t0", "token")

    def __init__(self, spec: StageSpec, run: RunState, in_list: list[object] | None,
                 raw_inputs: dict[str, object] | None) -> None:
        run.n_stages += 1
        ev = StageEvent(spec, run.run_id, run.label, run.date, new_stage_id())
        ev.seq = run.n_stages
        ev.parent_stage_id = _STAGE.get()
        ev.inputs.raw = raw_inputs
        ev.started_at = _clock()
        self.event = ev
        self.run = run
        self.in_list = in_list
        self.active_ms = 0.0
        self.token: Token[str | None] | None = None
        self.run_token: Token[RunState | None] | None = None
        self.t0 = _perf()

    def enter(self) -> None:
        """Make this the current stage (for nested stages' parent id); paired with leave().

        A run of the stage's own (implicit) is current only while the stage is, so the
        consumer of a generator stage does not record its own stages into that run.
        """
        self.token = _STAGE.set(self.event.stage_id)
        if self.run.implicit:
            self.run_token = _RUN.set(self.run)

    def leave(self) -> None:
        if self.run_token is not None:
            try:
                _RUN.reset(self.run_token)
            except ValueError:
                _RUN.set(None)
            self.run_token = None
        if self.token is not None:
            try:
                _STAGE.reset(self.token)
            except ValueError:
                _STAGE.set(self.event.parent_stage_id)
            self.token = None


def begin_stage(spec: StageSpec, label_hint: str | None, in_list: Sequence[object] | None,
                raw_inputs: dict[str, object] | None,
                run: RunState | None = None) -> StageCall | None:
    """Start recording a stage; None if recording is off or failed (the stage still runs)."""
    try:
        if not get_settings().enabled:
            return None
        run = run or _RUN.get()
        if run is None:  # made current by call.enter(), only while the stage body runs
            run = RunState(escape_surrogates(label_hint or spec.name), new_run_id(), None, None,
                           implicit=True)
        items = list(in_list) if isinstance(in_list, list | tuple) else None
        call = StageCall(spec, run, items, raw_inputs)
        call.enter()
        return call
    except Exception as err:
        report("stage.begin", err)
        return None


def end_stage(call: StageCall, result: object, exc: BaseException | None,
              active_ms: float | None = None) -> None:
    """Finish the stage: freeze candidates, queue the event; never raises (unless strict)."""
    ev = call.event
    try:
        call.leave()
        ev.duration_ms = active_ms if active_ms is not None else (_perf() - call.t0) * 1000.0
        ev.finished_at = ev.started_at + ev.duration_ms / 1000.0
        if exc is not None:
            ev.status = "failure"
            ev.error_message, ev.error_code = error_fields(exc)
            _freeze_inputs(ev, call.in_list)
        else:
            _capture_output(ev, call.in_list, result)
        get_writer().submit(ev)
    except Exception as err:
        _lost(ev)
        report("stage.end", err)
    finally:
        if call.run.implicit:
            end_run(call.run, None, exc)


def _lost(ev: StageEvent) -> None:
    """A stage record that capturing failed on: counted, so flush() tells the truth."""
    with contextlib.suppress(Exception):  # the writer itself failed: still counted as internal
        get_writer().shed("internal_error", ev)


def _freeze_inputs(ev: StageEvent, in_list: list[object] | None) -> None:
    ev.inputs.refs = in_list
    if in_list is not None and get_settings().snapshot == "reference":
        ev.inputs.snap = in_list
    elif in_list is not None:
        ev.inputs.blob = pack(in_list)
        if ev.inputs.blob is None:
            ev.inputs.snap = snapshot(in_list)
        elif in_list:
            ev.inputs.keys = _keys(in_list, ev.spec.fields.id)


def _capture_output(ev: StageEvent, in_list: list[object] | None, result: object) -> None:
    """Freeze the list that supplies payloads, once; keep the other by reference.

    One `orjson.dumps` of the list is the whole cost on the caller's thread for the common
    cases (see records/packed.py for the measurements behind this choice).
    """
    spec = ev.spec
    if spec.type == "raw":
        ev.outputs.raw = result
        return
    if not isinstance(result, list | tuple):
        ev.validation_error = (
            f"{spec.type} stage {spec.name!r} returned {type(result).__name__}, expected a "
            "list of candidates; the value is kept in output_json"
        )
        warn_once(f"shape:{spec.name}", "xray-lake: %s (recorded as the stage's "
                  "validation_error; logged once per stage name)", ev.validation_error)
        ev.outputs.raw = result if result is None or not hasattr(result, "__next__") else repr(
            result)
        _freeze_inputs(ev, in_list)
        return
    helpers = bool(result) and isinstance(result[0], RESULT_HELPERS)
    survivors_only = spec.type == "filtering" and spec.fields.passed is None and not helpers
    if survivors_only:
        _freeze_inputs(ev, in_list if in_list is not None else [])
        ev.outputs.refs = list(result)
        return
    ev.outputs.objs = list(result)
    if get_settings().snapshot == "reference":  # the writer reads the caller's objects
        ev.outputs.snap = ev.outputs.objs
        ev.inputs.refs = in_list
        return
    split = _pack_helpers(ev, ev.outputs.objs) if helpers else None
    if split is None:
        ev.outputs.helpers = helpers
        ev.outputs.blob = pack(result)
        if ev.outputs.blob is None:
            ev.outputs.snap = snapshot(result)
        elif result and not helpers:
            ev.outputs.keys = _keys(ev.outputs.objs, spec.fields.id)
    else:
        ev.outputs.objs = split  # the items: the same identities, without the caller's helpers
    if ev.outputs.keys is not None and None not in ev.outputs.keys:
        # every output has an id to be matched by: no need to keep the caller's objects
        # alive (and scanned by the cyclic GC) until the writer gets to this record
        ev.outputs.objs = None
    ev.inputs.refs = in_list
    if in_list:
        ev.inputs.keys = _keys(in_list, spec.fields.id)
        if len(result) < len(in_list):
            _freeze_dropped(ev, in_list, result if split is None else split,
                            helpers and split is None)


def _pack_helpers(ev: StageEvent, result: list[object]) -> list[object] | None:
    """Pack a list of the stage type's result helper as items + fields (records/packed.py);
    returns the items, or None to pack the list whole."""
    helper = HELPER_OF.get(ev.spec.type)
    packed = pack_helpers(result, helper) if helper is not None else None
    if packed is None:
        return None
    items, ev.outputs.blob, ev.outputs.fields = packed
    ev.outputs.keys = _keys(items, ev.spec.fields.id)
    return items


def _keys(items: list[object], key: str | None) -> tuple[object, ...] | None:
    """The candidates' ids as they are now (one C-level pass for dicts that all have the key).

    A tuple: once the cyclic GC has seen it hold only strings or numbers it stops tracking
    it, so queued records do not lengthen every collection in the caller's process.
    """
    if key is None:
        return None
    if not isinstance(items[0], RESULT_HELPERS):
        try:
            getter: Callable[[object], object] = operator.itemgetter(key)  # type: ignore[assignment]
            return tuple(map(getter, items))
        except (KeyError, TypeError, IndexError):
            pass
    return tuple(read_field(unwrap(x), key) for x in items)


def _freeze_dropped(ev: StageEvent, in_list: list[object], result: Sequence[object],
                    helpers: bool) -> None:
    """Pack the inputs the stage did not return (matched by identity, then id): only they
    are recorded from the input side. Skipped when nothing can have been dropped.

    On the caller's thread: per-candidate work stays in C (map, set, Counter) for the common
    shapes (plain candidates, string ids).
    """
    out_items = [x.item for x in result] if helpers else result  # type: ignore[attr-defined]
    returned = set(map(id, out_items))
    plain = not _HELPER_TYPES.intersection(map(type, in_list))
    inputs = in_list if plain else list(map(unwrap, in_list))
    same = set(itertools.compress(range(len(inputs)), map(returned.__contains__, map(id, inputs))))
    maybe = sorted(set(range(len(inputs))).difference(same)) if len(same) < len(inputs) else []
    key = ev.spec.fields.id
    if maybe and key is not None:
        # The writer matches ids one to one, in order (as text): an input is surely matched only
        # when its id has no more copies in the input than in the output.
        in_keys = ev.inputs.keys
        if in_keys is None or len(in_keys) != len(inputs):
            in_keys = tuple(read_field(x, key) for x in inputs)
        out_keys = ev.outputs.keys
        if out_keys is None or len(out_keys) != len(out_items):
            out_keys = tuple(read_field(x, key) for x in out_items)
        in_ids = _id_texts(in_keys)
        in_counts = Counter(in_ids)
        out_counts = Counter(_id_texts(out_keys))
        maybe = [i for i in maybe
                 if in_ids[i] is None or in_counts[in_ids[i]] > out_counts[in_ids[i]]]
    if maybe:
        dropped = list(map(inputs.__getitem__, maybe))
        ev.inputs.dropped_blob = pack(dropped)
        ev.inputs.dropped_idx = maybe
        if ev.inputs.dropped_blob is None:
            ev.inputs.snap = snapshot(in_list)


_HELPER_TYPES = frozenset(RESULT_HELPERS)


def _id_texts(keys: Sequence[object]) -> Sequence[str | None]:
    """Ids as the writer stores them (text); string ids as they are, with no per-id call."""
    if _STR_ONLY.issuperset(map(type, keys)):
        return keys  # type: ignore[return-value]
    return list(map(_id_text, keys))


_STR_ONLY = frozenset({str})


def _id_text(value: object) -> str | None:
    """A candidate id as the writer stores it (text), so unhashable ids compare too."""
    if value is None or isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return None

