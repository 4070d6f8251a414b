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
    # A registered custom stage type: recorded in `type` instead of `type`, which stays the
    # built-in type it behaves as (so every check of `type` keeps meaning "how to record").
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


class StageEvent:
    """A finished stage with its candidate lists.

    The list that supplies payloads is frozen when the stage returns: packed into one JSON
    blob (`*_blob`, see records/packed.py) or, when orjson cannot encode it, shallow-copied
    (`*_snap`). The writer unpacks blobs into `*_snap`. `*_refs` and `out_objs` are the caller's
    own objects: only their count, identity and ids are read. Inputs a stage dropped are packed separately
    (`dropped_blob`, with their input positions in `dropped_idx`).
    """

    __slots__ = (
        "date",
        "dropped_blob",
        "dropped_idx",
        "duration_ms",
        "error_code",
        "error_message",
        "finished_at",
        "helpers",
        "in_blob",
        "in_keys",
        "in_refs",
        "in_snap",
        "in_texts",
        "label",
        "out_blob",
        "out_columns",
        "out_fields",
        "out_keys",
        "out_objs",
        "out_refs",
        "out_snap",
        "out_texts",
        "parent_stage_id",
        "raw_inputs",
        "raw_output",
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
        self.raw_inputs: dict[str, object] | None = None
        self.raw_output: object = None
        self.in_refs: list[object] | None = None
        self.in_snap: list[object] | None = None
        self.out_refs: list[object] | None = None
        self.out_snap: list[object] | None = None
        self.in_blob: bytes | None = None
        self.out_blob: bytes | None = None
        self.dropped_blob: bytes | None = None
        self.dropped_idx: list[int] | None = None
        self.in_keys: tuple[object, ...] | None = None  # input ids read when the stage returned
        self.out_keys: tuple[object, ...] | None = None
        # the caller's returned objects, only to match candidates without an id to their
        # inputs by identity (a copy of the returned list, so later appends do not count)
        self.out_objs: list[object] | None = None
        self.helpers = False  # the packed output holds Filtered/Scored/Generated
        # Result helpers packed apart: `out_blob` holds their items, `out_fields` the helpers'
        # own fields, a JSON list per field; the writer unpacks those into `out_columns`.
        self.out_fields: bytes | None = None
        self.out_columns: dict[str, list[object]] | None = None
        self.in_texts: object = None  # writer-side: JSON text per unpacked item (pa.Array)
        self.out_texts: object = None
        self.validation_error: str | None = None

    def n_items(self) -> int:
        n = 0
        for items in (self.in_snap, self.out_snap, self.in_refs, self.out_refs):
            if items is not None:
                n = max(n, len(items))
        return n

    def estimate_bytes(self, row_bytes: float) -> int:
        """Memory this event holds until the writer encodes it (for the buffer bound)."""
        packed = sum(len(b) for b in (self.in_blob, self.out_blob, self.out_fields,
                                        self.dropped_blob) if b)
        copies = sum(len(x) for x in (self.in_snap, self.out_snap) if x is not None)
        return int(1024 + max(2 * packed, self.n_items() * row_bytes) + copies * row_bytes)
