"""Per-stage scale controls: row sampling (`Sample`) and size caps (`Caps`)."""

from __future__ import annotations

import os
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from xray_lake.config import Settings
from xray_lake.records.values import finite_float

# Stage types and the Sample fields that apply to them.
_FAILED_TYPES = frozenset({"filtering"})
_TOP_TYPES = frozenset({"scoring", "ranking", "retrieval", "generation"})
DEFAULT_TOP = 100


@dataclass(frozen=True, slots=True)
class Sample:
    """Which candidate rows of a stage are stored; the stage's metrics always see them all.

    Filtering stages: every passed candidate is kept; a failed one is kept when its hash is
    below `failed`, and at most `max_failed` of them (those with the smallest hashes).
    Scoring, ranking (and retrieval, generation): the first `top` rows (by out_position; for
    scoring by score, highest first) are kept, the others when their hash is below `rest`,
    at most `max_rest` of them. `top` alone keeps only the top.

    The hash of a candidate is `crc32(salt + "\\x00" + candidate_id) / 2**32`: with no salt a
    candidate is kept or dropped the same way at every stage of every run; `salt="run"` uses
    the run id (a different choice per run); any other string is used as given. Candidates
    without an id are always kept.

    Parameters
    ----------
    failed, max_failed
        Filtering stages: the share of failed candidates kept (0 to 1), and at most how many.
    top, rest, max_rest
        Other list stages: the first `top` rows, then the share `rest` of the others, at most
        `max_rest` of them.
    salt
        None (the same candidates everywhere), "run" (a choice per run) or any string.

    Examples
    --------
    >>> @xr.scoring_stage("relevance", sample=xr.Sample(top=2))
    ... def relevance(items):
    ...     return [dict(i, score=i["n"]) for i in items]
    >>> with capture_records() as records:
    ...     scored = relevance([{"id": f"c{n}", "n": n} for n in range(5)])
    >>> sorted(records.candidates["candidate_id"]), records.stage("relevance")["score_mean"]
    (['c3', 'c4'], 2.0)
    """

    failed: float | None = None
    max_failed: int | None = None
    top: int | None = None
    rest: float | None = None
    max_rest: int | None = None
    salt: str | None = None

    def problems(self, stage_type: str) -> list[tuple[str, str]]:
        """(problem, fix) pairs for this sample on a stage of `stage_type`; empty when valid."""
        found: list[tuple[str, str]] = []
        for name in ("failed", "rest"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not 0.0 <= value <= 1.0):
                found.append((f"Sample({name}={value!r}) is not a rate in [0, 1]",
                              f"pass a fraction such as Sample({name}=0.05)"))
        for name in ("max_failed", "top", "max_rest"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0 or (name == "top" and value == 0)):
                found.append((f"Sample({name}={value!r}) is not a "
                              f"{'positive' if name == 'top' else 'non-negative'} integer",
                              f"pass a whole number such as Sample({name}=100)"))
        if self.salt is not None and not isinstance(self.salt, str):
            found.append((f"Sample(salt={self.salt!r}) is not a string",
                          'pass salt="run" (per-run choice), another string, or nothing'))
        failed_side = self.failed is not None or self.max_failed is not None
        top_side = self.top is not None or self.rest is not None or self.max_rest is not None
        if stage_type == "raw":
            found.append(("a raw stage has no candidate rows to sample", "drop sample="))
        elif not failed_side and not top_side:
            found.append(("Sample() sets nothing to sample",
                          "set failed=/max_failed= (filtering) or top=/rest=/max_rest="))
        elif stage_type in _FAILED_TYPES and top_side:
            found.append(("top=/rest=/max_rest= do not apply to a filtering stage",
                          "sample a filtering stage with Sample(failed=..., max_failed=...)"))
        elif stage_type in _TOP_TYPES and failed_side:
            found.append((f"failed=/max_failed= apply only to filtering stages, not {stage_type}",
                          "use Sample(top=..., rest=..., max_rest=...)"))
        return found

    def keep(self, ids: Sequence[str | None], passed: Sequence[object],
             out_pos: Sequence[int | None], score: Sequence[object], stage_type: str,
             run_id: str) -> list[bool] | None:
        """Which rows to store, or None to store them all."""
        salt = run_id if self.salt == "run" else (self.salt or "")
        prefix = (salt + "\x00").encode()
        crc = zlib.crc32(prefix)
        n = len(ids)
        keep = [True] * n
        if stage_type in _FAILED_TYPES:
            pool = [i for i in range(n) if passed[i] is not None and not passed[i]
                    and ids[i] is not None]
            rate, limit = self.failed, self.max_failed
        else:
            top = self.top or 0
            if self.top is not None and self.rest is None and self.max_rest is None:
                rate, limit = 0.0, None
            else:
                rate, limit = self.rest, self.max_rest
            in_top = _top_rows(out_pos, score, top, stage_type == "scoring")
            pool = [i for i in range(n) if i not in in_top and ids[i] is not None]
        if not pool or (rate is None and (limit is None or limit >= len(pool))):
            return None
        hashes = {i: zlib.crc32(str(ids[i]).encode(), crc) / 2**32 for i in pool}
        chosen = [i for i in pool if rate is None or hashes[i] < rate]
        if limit is not None and len(chosen) > limit:
            chosen = sorted(chosen, key=hashes.__getitem__)[:limit]
        for i in pool:
            keep[i] = False
        for i in chosen:
            keep[i] = True
        return None if all(keep) else keep


def candidate_hash(candidate_id: str, salt: str = "") -> float:
    """The sampling hash of one candidate id, in [0, 1)."""
    return zlib.crc32((salt + "\x00" + candidate_id).encode()) / 2**32


def _top_rows(out_pos: Sequence[int | None], score: Sequence[object], top: int,
              by_score: bool) -> set[int]:
    if top <= 0:
        return set()
    returned = [i for i in range(len(out_pos)) if out_pos[i] is not None]
    if by_score:
        def key(i: int) -> tuple[bool, float, int]:
            s = finite_float(score[i])
            return (s is None, -(s or 0.0), out_pos[i] or 0)
    else:
        def key(i: int) -> tuple[bool, float, int]:
            return (False, 0.0, out_pos[i] or 0)
    return set(sorted(returned, key=key)[:top])




@dataclass(frozen=True, slots=True)
class Caps:
    """Size caps for one stage, overriding the global settings (None: use the global one).

    `payload_bytes` caps each candidate's JSON payload, `raw_bytes` the stage's raw input and
    output JSON, `reason_chars` each reason text. Cut values are marked and counted in
    `stages.n_truncated`.
    """

    payload_bytes: int | None = None
    raw_bytes: int | None = None
    reason_chars: int | None = None

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for name in ("payload_bytes", "raw_bytes", "reason_chars"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value <= 0):
                found.append((f"Caps({name}={value!r}) is not a positive integer",
                              f"pass a size such as Caps({name}=4096), or None for the global"))
        return found


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _deprecated(name: str, value: int, instead: str) -> None:
    """Warn, once per decoration, that a sampling shortcut is the old spelling of `sample=`.

    Pointed at the user's decorator line: the first frame outside this package.
    """
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    warnings.warn(f"{name}={value} is deprecated and will be removed in the next release; "
                  f"pass {instead}, which stores the same rows", DeprecationWarning,
                  stacklevel=level + 1)


def resolve(stage_type: str, sample: object, caps: object, *, max_failed: object = None,
            max_out_of_top: object = None
            ) -> tuple[Sample | None, Caps | None, list[tuple[str, str]]]:
    """A stage's scale options from its keyword arguments: (sample, caps, [(problem, fix)]).

    `max_failed=` / `max_out_of_top=` are the deprecated spellings of `sample=`: still
    accepted for this release, with a DeprecationWarning at decoration.
    """
    problems: list[tuple[str, str]] = []
    if sample is not None and not isinstance(sample, Sample):
        problems.append((f"sample={sample!r} is not an xr.Sample",
                         "pass sample=xr.Sample(failed=0.05) or similar"))
        sample = None
    if caps is not None and not isinstance(caps, Caps):
        problems.append((f"caps={caps!r} is not an xr.Caps",
                         "pass caps=xr.Caps(payload_bytes=4096) or similar"))
        caps = None
    for name, value in (("max_failed", max_failed), ("max_out_of_top", max_out_of_top)):
        if value is None:
            continue
        if sample is not None:
            problems.append((f"both sample= and {name}= are given",
                             f"pass one of them (sample=xr.Sample(...) covers {name})"))
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append((f"{name}={value!r} is not a non-negative integer",
                             f"pass a whole number such as {name}=500"))
        elif name == "max_failed":
            sample = Sample(max_failed=value)
            _deprecated(name, value, f"sample=xr.Sample(max_failed={value})")
        else:
            sample = Sample(top=DEFAULT_TOP, max_rest=value)
            _deprecated(name, value, f"sample=xr.Sample(top={DEFAULT_TOP}, max_rest={value})")
    if isinstance(sample, Sample):
        problems.extend(sample.problems(stage_type))
    if isinstance(caps, Caps):
        problems.extend(caps.problems())
    return (sample if isinstance(sample, Sample) else None,
            caps if isinstance(caps, Caps) else None, problems)


def mapping_problems(mappings: dict[str, object]) -> list[tuple[str, str]]:
    """(problem, fix) pairs for field mappings and dict keys (`id=`, `score=`, `input_key=`
    ...): each is None or a field name, or a dotted path (`meta.reason`) of non-empty parts."""
    found: list[tuple[str, str]] = []
    for role, value in mappings.items():
        if value is None:
            continue
        if not isinstance(value, str):
            found.append((f"{role}={value!r} is not a field name",
                          f"pass {role}= a key or attribute name as a string, e.g. "
                          f"{role}='{role.removesuffix('_key')}'"))
        elif not value.strip():
            found.append((f"{role}={value!r} is empty",
                          f"pass {role}= the key or attribute name, or None"))
        elif "" in value.split("."):
            found.append((f"{role}={value!r} has an empty part in its dotted path",
                          f"write the path as parts joined by single dots, e.g. "
                          f"{role}='meta.{role.removesuffix('_key')}'"))
    return found


class CapsInForce:
    """The size caps in force for one stage: its own `Caps`, else the global settings."""

    __slots__ = ("payload", "raw", "reason")

    def __init__(self, settings: Settings, caps: Caps | None) -> None:
        self.payload = settings.payload_cap_bytes
        self.raw = settings.raw_cap_bytes
        self.reason = settings.reason_cap_chars
        if caps is not None:
            self.payload = caps.payload_bytes or self.payload
            self.raw = caps.raw_bytes or self.raw
            self.reason = caps.reason_chars or self.reason
