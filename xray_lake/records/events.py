"""What the SDK hands to the writer: plain slotted objects built on the caller's thread, turned into rows later."""

from __future__ import annotations

from dataclasses import dataclass, field

from xray_lake.records.options import Caps, Sample
from xray_lake.records.promoted import Promoted

STAGE_TYPES = ("retrieval", "scoring", "filtering", "generation", "ranking", "raw")
# Stage types whose function takes the candidate list as input (retrieval and generation
# produce theirs).
INPUT_LIST_TYPES = frozenset({"scoring", "filtering", "ranking"})
LIST_TYPES = frozenset(STAGE_TYPES) - {"raw"}
# The FieldMap roles (besides `id`) each built-in type's row builder reads from a candidate:
# what a custom stage type based on it may map its own fields to.
ROLES: dict[str, tuple[str, ...]] = {
    "filtering": ("passed", "reason_label", "reason_text"),
    "scoring": ("score",),
    "ranking": ("score",),
    "generation": ("reason",),
    "retrieval": (),
    "raw": (),
}


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Where a candidate keeps each recorded field: a dict key, an attribute or a model field."""

    id: str | None = "id"
    passed: str | None = None
    reason_label: str | None = None
    reason_text: str | None = None
    score: str | None = None
    reason: str | None = None
    # candidate fields stored as typed columns `f_<name>` (fields= on the stage)
    promoted: tuple[Promoted, ...] = ()

    def named(self) -> dict[str, str]:
        """The mappings that name something, as role -> field name."""
        return {
            role: name
            for role in ("id", "passed", "reason_label", "reason_text", "score", "reason")
            if (name := getattr(self, role)) is not None
        }


@dataclass(frozen=True, slots=True)
class StageSpec:
    """The fixed description of one stage: known at decoration, shared by every call."""

    name: str
    type: str
    fields: FieldMap = field(default_factory=FieldMap)
    qualname: str | None = None
    sample: Sample | None = None  # which candidate rows are stored (metrics see them all)
    caps: Caps | None = None  # size caps overriding the global settings for this stage
    # A registered custom stage type: written to `stages.type` in place of `type`, which stays
    # the built-in type it behaves as (so every check of `type` keeps meaning "how to record").
    custom_type: str | None = None
    # The custom type's own candidate fields: (field, key read from each candidate).
    type_fields: tuple[tuple[str, str], ...] = ()

    @property
    def recorded_type(self) -> str:
        """The name written to `stages.type` and `candidates.stage_type`."""
        return self.custom_type or self.type


class RunEvent:
    """A finished run. Values are references; the writer encodes them off the caller's thread."""

    __slots__ = (
        "attributes",
        "date",
        "duration_ms",
        "error_code",
        "error_message",
        "finished_at",
        "input",
        "label",
        "n_candidates_shed",
        "n_stages",
        "n_stages_shed",
        "output",
        "run_id",
        "started_at",
        "status",
    )

    def __init__(
        self,
        run_id: str,
        label: str,
        date: str,
        started_at: float,
        finished_at: float,
        duration_ms: float,
        status: str,
        error_message: str | None,
        error_code: str | None,
        n_stages: int,
        attributes: dict[str, object] | None,
        input: object,
        output: object,
    ) -> None:
        self.run_id = run_id
        self.label = label
        self.date = date
        self.started_at = started_at
        self.finished_at = finished_at
        self.duration_ms = duration_ms
        self.status = status
        self.error_message = error_message
        self.error_code = error_code
        self.n_stages = n_stages
        self.attributes = attributes
        self.input = input
        self.output = output
        # what the writer had to shed of this run before its row was written (whole runs or
        # nothing: such a run is recorded with status 'incomplete')
        self.n_stages_shed = 0
        self.n_candidates_shed = 0


class StageInputs:
    """The input side of a stage: the candidate list it was given.

    `refs` is the caller's own list (only its count, identities and ids are read). When the
    stage raised, or is a filtering stage returning survivors, the inputs supply the payloads:
    frozen into one JSON `blob` (records/packed.py) or, when orjson cannot encode them,
    shallow-copied into `snap`. Inputs the stage dropped are packed apart (`dropped_blob`,
    with their input positions in `dropped_idx`). `keys` are the ids read when the stage
    returned; `raw` the call's arguments (the stage's `input_json`).
    """

    __slots__ = ("blob", "dropped_blob", "dropped_idx", "keys", "raw", "refs", "snap")

    def __init__(self) -> None:
        self.raw: dict[str, object] | None = None
        self.refs: list[object] | None = None
        self.snap: list[object] | None = None
        self.blob: bytes | None = None
        self.keys: tuple[object, ...] | None = None
        self.dropped_blob: bytes | None = None
        self.dropped_idx: list[int] | None = None


class StageOutputs:
    """The output side of a stage: the candidate list it returned, frozen when it returned.

    `blob` / `snap` as for the inputs. `refs` holds a filtering stage's survivors (the caller's
    objects, matched to the inputs by identity). `objs` is a copy of the returned list, kept
    only to match candidates without an id to their inputs by identity. Result helpers
    (Filtered/Scored/Generated) are either packed whole (`helpers`) or apart: `blob` holds
    their items and `fields` the helpers' own fields, a JSON list per field. `raw` is what a
    raw stage (or one that returned no list) returned (its `output_json`).
    """

    __slots__ = ("blob", "fields", "helpers", "keys", "objs", "raw", "refs", "snap")

    def __init__(self) -> None:
        self.raw: object = None
        self.refs: list[object] | None = None
        self.snap: list[object] | None = None
        self.blob: bytes | None = None
        self.keys: tuple[object, ...] | None = None
        self.objs: list[object] | None = None
        self.helpers = False
        self.fields: bytes | None = None


class StageEvent:
    """A finished stage: its timing and status, its input side and its output side.

    Plain slotted objects all the way down (picklable as they are), filled on the caller's
    thread and read, never changed, by the writer (records/build.py).
    """

    __slots__ = (
        "date",
        "duration_ms",
        "error_code",
        "error_message",
        "finished_at",
        "inputs",
        "label",
        "outputs",
        "parent_stage_id",
        "run_id",
        "seq",
        "spec",
        "stage_id",
        "started_at",
        "status",
        "validation_error",
    )

    def __init__(self, spec: StageSpec, run_id: str, label: str, date: str, stage_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self.label = label
        self.date = date
        self.stage_id = stage_id
        self.parent_stage_id: str | None = None
        self.seq = 0
        self.started_at = 0.0
        self.finished_at = 0.0
        self.duration_ms = 0.0
        self.status = "success"
        self.error_message: str | None = None
        self.error_code: str | None = None
        self.validation_error: str | None = None
        self.inputs = StageInputs()
        self.outputs = StageOutputs()

    def n_items(self) -> int:
        """The most candidates either side holds (what shedding this record costs)."""
        i, o = self.inputs, self.outputs
        n = 0
        for items in (i.snap, o.snap, i.refs, o.refs):
            if items is not None:
                n = max(n, len(items))
        return n

    def estimate_bytes(self, row_bytes: float) -> int:
        """Memory this event holds until the writer encodes it (for the buffer bound)."""
        i, o = self.inputs, self.outputs
        packed = sum(len(b) for b in (i.blob, o.blob, o.fields, i.dropped_blob) if b)
        copies = sum(len(x) for x in (i.snap, o.snap) if x is not None)
        return int(1024 + max(2 * packed, self.n_items() * row_bytes) + copies * row_bytes)
