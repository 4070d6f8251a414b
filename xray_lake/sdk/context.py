"""Context-manager API for code without decorators: `with xr.run(...)` and `with run.stage(...)`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Literal, ParamSpec, Self, TypeVar

from xray_lake._internal_errors import report
from xray_lake.errors import DecorationError, XrayLakeError
from xray_lake.records.events import FieldMap, StageSpec
from xray_lake.records.options import Caps, Sample, mapping_problems, resolve
from xray_lake.records.promoted import Field, resolve_fields
from xray_lake.records.values import read_field
from xray_lake.sdk.decorators import decorate_stage
from xray_lake.sdk.plugins import call_site, resolve_type, stage_type_fields
from xray_lake.sdk.recording import RunState, StageCall, begin_run, begin_stage, end_run, end_stage
from xray_lake.sdk.signature import fail

StageType = Literal["retrieval", "scoring", "filtering", "generation", "ranking", "raw"]
P = ParamSpec("P")
R = TypeVar("R")


Span = tuple[float | None, float | None]  # (started_at, finished_at), epoch seconds


class _Block:
    """A `with` block that serves `async with` as well: entering and leaving never await."""

    def __enter__(self) -> Self:
        raise NotImplementedError

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


class Stage(_Block):
    """One stage recorded by hand: call `input(...)` and `output(...)` inside the block.

    `output()` takes the stage's candidates, or its typed results: `xr.Filtered(item, passed,
    reason_label, reason_text)` in a filtering stage, `xr.Scored(item, score)` in a scoring or
    ranking stage, `xr.Generated(item, reason)` in a generation or retrieval stage."""

    def __init__(self, spec: StageSpec, run: RunState | None,
                 keys: tuple[str | None, str | None] = (None, None),
                 span: Span = (None, None)) -> None:
        self._spec = spec
        self._run = run
        self._keys = keys
        self._span = span
        self._call: StageCall | None = None
        self._result: object = None
        self._stage_id: str | None = None

    def __enter__(self) -> Stage:
        self._call = begin_stage(self._spec, None, None, None, self._run)
        if self._call is not None:
            self._stage_id = self._call.event.stage_id
            if self._span[0] is not None:  # something that already happened (an imported span)
                self._call.event.started_at = self._span[0]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if self._call is not None:
            start, end = self._span
            active_ms = None if start is None or end is None else max(end - start, 0.0) * 1000
            end_stage(self._call, self._result, exc, active_ms)
            self._call = None
        return False

    @property
    def stage_id(self) -> str | None:
        """The recorded stage's id (also after the block); None when nothing is recorded."""
        return self._stage_id

    def input(self, candidates: Sequence[object] | None = None, /, **raw: object) -> None:
        """The candidate list the stage received, and any raw inputs by name."""
        call = self._call
        if call is None:
            return
        try:
            if candidates is not None and self._keys[0] is not None:
                candidates = read_field(candidates, self._keys[0])  # type: ignore[assignment]
            if candidates is not None:
                call.in_list = list(candidates)
            if raw:
                call.event.inputs.raw = {**(call.event.inputs.raw or {}), **raw}
        except Exception as err:
            report("stage.input", err)

    def output(self, result: object) -> None:
        """What the stage returned: its candidate list, or the result helpers of its type
        (`xr.Filtered`, `xr.Scored`, `xr.Generated`), or any value for a raw stage."""
        if self._keys[1] is not None and result is not None:
            found = read_field(result, self._keys[1])
            result = result if found is None else found
        self._result = result

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]:
        """`@xr.stage("name", type=...)` decorates a function as this stage: any type, the
        registered ones included, with the same checks as the typed decorators."""
        if self._run is not None:
            raise fail(func, "run.stage(...) opens a block inside one run and cannot decorate",
                       "decorate with @xr.stage(...) instead")
        return decorate_stage(func, self._spec, "xr.stage", input_key=self._keys[0],
                              output_key=self._keys[1])


class Run(_Block):
    """One run recorded by hand; stages opened with `run.stage(...)` belong to it."""

    def __init__(self, label: str, run_id: str | None, attributes: dict[str, object] | None,
                 input: object, span: Span = (None, None)) -> None:
        self._args = (label, run_id, attributes, input)
        self._span = span
        self._state: RunState | None = None
        self._run_id = run_id
        self.output: object = None

    def __enter__(self) -> Run:
        label, run_id, attributes, input = self._args
        try:
            self._state = begin_run(label, run_id, attributes, input)
            self._run_id = self._state.run_id
            if self._span[0] is not None:  # a run that already happened: its own start and date
                self._state.started_at = self._span[0]
                self._state.date = time.strftime("%Y-%m-%d", time.gmtime(self._span[0]))
        except Exception as err:
            report("run.begin", err)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if self._state is not None:
            start, end = self._span
            if start is not None and end is not None:  # the run's duration: end - start
                self._state.t0 = time.perf_counter() - max(end - start, 0.0)
            end_run(self._state, self.output, exc)
            self._state = None
        return False

    @property
    def run_id(self) -> str | None:
        """The run's id: the one given, else the one generated on entry (kept after the block)."""
        return self._run_id

    def set_output(self, value: object) -> None:
        self.output = value

    def stage(self, name: str, *, type: StageType | str = "raw", id: str | None = "id",
              passed: str | None = None, reason_label: str | None = None,
              reason_text: str | None = None, score: str | None = None,
              reason: str | None = None, sample: Sample | None = None,
              max_failed: int | None = None, max_out_of_top: int | None = None,
              caps: Caps | None = None, fields: Mapping[str, str | Field] | None = None,
              type_fields: Mapping[str, str] | None = None, input_key: str | None = None,
              output_key: str | None = None, started_at: float | None = None,
              finished_at: float | None = None) -> Stage:
        return stage(name, type=type, id=id, passed=passed, reason_label=reason_label,
                     reason_text=reason_text, score=score, reason=reason, sample=sample,
                     max_failed=max_failed, max_out_of_top=max_out_of_top, caps=caps,
                     fields=fields, type_fields=type_fields, input_key=input_key,
                     output_key=output_key, started_at=started_at, finished_at=finished_at,
                     _run=self._state)


def _span(what: str, started_at: float | None, finished_at: float | None) -> Span:
    """Checked (started_at, finished_at): both or neither, epoch seconds, end not before start."""
    if started_at is None and finished_at is None:
        return None, None
    if started_at is None or finished_at is None:
        raise XrayLakeError(f"{what} takes started_at= and finished_at= together (epoch "
                            "seconds), or neither")
    if not all(isinstance(t, int | float) and not isinstance(t, bool)
               for t in (started_at, finished_at)) or finished_at < started_at:
        raise XrayLakeError(f"{what}: started_at={started_at!r}, finished_at={finished_at!r} "
                            "are not epoch seconds with finished_at >= started_at")
    return float(started_at), float(finished_at)


def run(label: str, *, run_id: str | None = None, attributes: dict[str, object] | None = None,
        input: object = None, started_at: float | None = None,
        finished_at: float | None = None) -> Run:
    """`with xr.run("label", run_id=...) as run:` records one run of pipeline `label`.

    `started_at=` / `finished_at=` (epoch seconds, both or neither) record a run that already
    happened, such as an imported trace, with its own times instead of the block's."""
    if not isinstance(label, str):
        raise XrayLakeError(f"xr.run() takes the pipeline label as a string, got {label!r}")
    return Run(label, run_id, attributes, input, _span("xr.run()", started_at, finished_at))


def stage(name: str, *, type: StageType | str = "raw", id: str | None = "id",
          passed: str | None = None, reason_label: str | None = None,
          reason_text: str | None = None, score: str | None = None, reason: str | None = None,
          sample: Sample | None = None, max_failed: int | None = None,
          max_out_of_top: int | None = None, caps: Caps | None = None,
          fields: Mapping[str, str | Field] | None = None,
          type_fields: Mapping[str, str] | None = None, input_key: str | None = None,
          output_key: str | None = None, started_at: float | None = None,
          finished_at: float | None = None, _run: RunState | None = None) -> Stage:
    """A stage of the current run (or a run of its own when there is none).

    `sample=` stores only some candidate rows (`max_failed=`, `max_out_of_top=`: its
    deprecated shortcuts, warned about when the stage is opened); `caps=` overrides the global size caps for this stage; `fields=` stores
    candidate fields as typed columns `f_<name>` of `candidates`. Field mappings may be
    dotted paths (`passed="meta.ok"`); `input_key=` / `output_key=` name the candidate list
    inside a dict given to `input()` / `output()`; `started_at=` / `finished_at=` (epoch
    seconds) record a stage that already happened with its own times.

    `type=` is a built-in type or one registered with `xr.register_stage_type`; such a type
    reads its own candidate fields from the keys of the same name, or from those
    `type_fields={"verdict": "decision"}` names. Used as a decorator, `@xr.stage(...)` records
    each call of the function."""
    custom = resolve_type(type, f"stage {name!r}", call_site)
    base = custom.base if custom is not None else type
    if max_failed is not None and base != "filtering":
        raise DecorationError(f"max_failed= applies only to filtering stages, not stage {name!r} "
                              f"of type {type!r} ({call_site()}). Fix: use "
                              "sample=xr.Sample(...) or drop it")
    if max_out_of_top is not None and base not in {"scoring", "ranking"}:
        raise DecorationError(f"max_out_of_top= applies only to scoring and ranking stages, not "
                              f"stage {name!r} of type {type!r} ({call_site()}). Fix: drop it")
    scale_sample, scale_caps, problems = resolve(base, sample, caps, max_failed=max_failed,
                                                 max_out_of_top=max_out_of_top)
    promoted, more = resolve_fields(fields)
    if base == "raw" and promoted:
        more.append(("a raw stage has no candidates to promote fields from", "drop fields="))
    problems += more
    roles = {"passed": passed, "reason_label": reason_label, "reason_text": reason_text,
             "score": score, "reason": reason}
    problems += mapping_problems({"id": id, **roles, "input_key": input_key,
                                  "output_key": output_key})
    keys = (input_key, output_key)
    if base == "raw" and (input_key is not None or output_key is not None):
        problems.append(("input_key=/output_key= apply to stages with candidates, not a raw "
                         "stage", "drop them, or give the stage a candidate type"))
    mapped, own_fields, more = stage_type_fields(custom, type_fields, roles)
    problems += more
    if problems:
        problem, fix = problems[0]
        raise DecorationError(f"{problem} in stage {name!r} ({call_site()}). Fix: {fix}")
    roles.update(mapped)
    if roles["score"] is None and base == "scoring":
        roles["score"] = "score"
    field_map = FieldMap(id=id, promoted=promoted, **roles)
    return Stage(StageSpec(name, base, field_map, None, scale_sample, scale_caps,
                           custom_type=custom.name if custom is not None else None,
                           type_fields=own_fields), _run, keys,
                 _span(f"stage {name!r}", started_at, finished_at))
