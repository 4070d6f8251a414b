"""The current run and stage (contextvars), and the begin/end logic every front end shares.

Everything here runs on the caller's thread, so it does the least it can: read clocks, take
one shallow copy of the candidate list that supplies payloads, and queue an event.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar, Token

from xray_lake.config import get_settings
from xray_lake.records.events import RunEvent, StageEvent, StageSpec
from xray_lake.records.results import Filtered
from xray_lake.records.snapshot import snapshot
from xray_lake.sdk._guard import report
from xray_lake.writer.process import get_writer

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
        self.date = time.strftime("%Y-%m-%d", time.gmtime(self.started_at))
        self.t0 = _perf()
        self.token: Token[RunState | None] | None = None


_RUN: ContextVar[RunState | None] = ContextVar("xray_lake_run", default=None)
_STAGE: ContextVar[str | None] = ContextVar("xray_lake_stage", default=None)

_prefix = secrets.token_hex(4)
_counter = itertools.count(1)


def _reseed_after_fork() -> None:
    global _prefix, _counter
    _prefix = secrets.token_hex(4)
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed_after_fork)


def new_stage_id() -> str:
    return f"{_prefix}{next(_counter):x}"


def new_run_id() -> str:
    return uuid.uuid4().hex


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
    run = RunState(label, run_id or new_run_id(), attributes, input, implicit)
    run.token = _RUN.set(run)
    return run


def end_run(run: RunState, exc: BaseException | None, output: object = None) -> None:
    """Close the run: restore the previous one and queue its record (never raises)."""
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

    __slots__ = ("active_ms", "event", "in_list", "run", "t0", "token")

    def __init__(self, spec: StageSpec, run: RunState, in_list: list[object] | None,
                 raw_inputs: dict[str, object] | None) -> None:
        run.n_stages += 1
        ev = StageEvent(spec, run.run_id, run.label, run.date, new_stage_id())
        ev.seq = run.n_stages
        ev.parent_stage_id = _STAGE.get()
        ev.raw_inputs = raw_inputs
        ev.started_at = _clock()
        self.event = ev
        self.run = run
        self.in_list = in_list
        self.active_ms = 0.0
        self.token: Token[str | None] | None = None
        self.t0 = _perf()

    def enter(self) -> None:
        """Make this the current stage (for nested stages' parent id); paired with leave()."""
        self.token = _STAGE.set(self.event.stage_id)

    def leave(self) -> None:
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
        if run is None:
            run = begin_run(label_hint or spec.name, None, implicit=True)
        items = list(in_list) if isinstance(in_list, list | tuple) else None
        call = StageCall(spec, run, items, raw_inputs)
        call.enter()
        return call
    except Exception as err:
        report("stage.begin", err)
        return None


def end_stage(call: StageCall, result: object, exc: BaseException | None,
              active_ms: float | None = None) -> None:
    """Finish the stage: snapshot candidates, queue the event; never raises (unless strict)."""
    ev = call.event
    try:
        call.leave()
        ev.duration_ms = active_ms if active_ms is not None else (_perf() - call.t0) * 1000.0
        ev.finished_at = ev.started_at + ev.duration_ms / 1000.0
        if exc is not None:
            ev.status = "failure"
            ev.error_message, ev.error_code = error_fields(exc)
            ev.in_refs = call.in_list
        else:
            _capture_output(ev, call.in_list, result)
        get_writer().submit(ev)
    except Exception as err:
        report("stage.end", err)
    finally:
        if call.run.implicit:
            end_run(call.run, exc)


def _capture_output(ev: StageEvent, in_list: list[object] | None, result: object) -> None:
    spec = ev.spec
    if spec.type == "raw":
        ev.raw_output = result
        return
    if not isinstance(result, list | tuple):
        ev.validation_error = (
            f"{spec.type} stage {spec.name!r} returned {type(result).__name__}, expected a "
            "list of candidates; the value is kept in output_json"
        )
        ev.raw_output = result if result is None or not hasattr(result, "__next__") else repr(
            result)
        ev.in_refs = in_list
        return
    survivors_only = (
        spec.type == "filtering"
        and spec.fields.passed is None
        and not (result and isinstance(result[0], Filtered))
    )
    if survivors_only:
        source = in_list or []
        ev.in_snap = snapshot(source)
        ev.in_refs = source
        ev.out_refs = list(result)
    else:
        ev.out_snap = snapshot(result)
        ev.in_refs = in_list
