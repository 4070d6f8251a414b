"""Per-stage metrics over a full candidate list, in pure Python for a background thread."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Hashable, Sequence
from itertools import compress, count, islice, repeat
from operator import and_, lshift, lt, mul, not_, or_, sub
from typing import Final, SupportsFloat, TypedDict, TypeVar, cast

__all__ = [
    "METRIC_COLUMNS",
    "UNLABELLED",
    "FilteringMetrics",
    "GenerationMetrics",
    "RankingMetrics",
    "RetrievalMetrics",
    "ScoringMetrics",
    "filtering_metrics",
    "generation_metrics",
    "ranking_metrics",
    "retrieval_metrics",
    "scoring_metrics",
]

UNLABELLED: Final = "(unlabelled)"
"""``reason_counts`` key for failed candidates whose reason label is None, empty or blank."""

METRIC_COLUMNS: Final[dict[str, str]] = {
    "n_passed": "int64",
    "n_failed": "int64",
    "fail_ratio": "float64",
    "pass_ratio": "float64",
    "score_min": "float64",
    "score_max": "float64",
    "score_mean": "float64",
    "score_std": "float64",
    "score_p50": "float64",
    "score_p90": "float64",
    "n_score_null": "int64",
    "rank_kendall_tau": "float64",
    "rank_mean_displacement": "float64",
    "topk_overlap": "float64",
    "n_unique": "int64",
    "duplicate_ratio": "float64",
    "n_generated": "int64",
    "n_empty_reason": "int64",
}
"""Every scalar metric column (``reason_counts`` excluded) and its Arrow type alias, in schema order."""


class FilteringMetrics(TypedDict):
    n_passed: int
    n_failed: int
    fail_ratio: float | None
    pass_ratio: float | None
    reason_counts: dict[str, int]


class ScoringMetrics(TypedDict):
    score_min: float | None
    score_max: float | None
    score_mean: float | None
    score_std: float | None
    score_p50: float | None
    score_p90: float | None
    n_score_null: int


class RankingMetrics(TypedDict):
    rank_kendall_tau: float | None
    rank_mean_displacement: float | None
    topk_overlap: float | None


class RetrievalMetrics(TypedDict):
    n_unique: int
    duplicate_ratio: float | None


class GenerationMetrics(TypedDict):
    n_generated: int
    n_empty_reason: int


def _is_blank(text: str | None) -> bool:
    return not text or text.isspace()


# --------------------------------------------------------------------------- filtering


def filtering_metrics(
    n_in: int, passed: Sequence[bool | None], reason_labels: Sequence[str | None]
) -> FilteringMetrics:
    """Pass/fail counts and failure reasons over all ``n_in`` input candidates.

    ``passed[i]`` is read by truthiness, so None ("unknown") counts as failed: a candidate is
    only counted as passed when the filter said so. Labels of passed candidates are ignored;
    failed candidates with a None, empty or whitespace-only label go under ``UNLABELLED``.
    ``reason_counts`` is ordered by count descending, then label. Raises ValueError when the
    sequence lengths differ from ``n_in``.
    """
    if n_in < 0:
        raise ValueError(f"n_in must be >= 0, got {n_in}")
    if len(passed) != n_in or len(reason_labels) != n_in:
        raise ValueError(
            f"expected {n_in} entries, got passed={len(passed)}, reason_labels={len(reason_labels)}"
        )
    raw = Counter(compress(reason_labels, map(not_, passed)))
    counts: dict[str, int] = {}
    for label, n in raw.items():
        key = UNLABELLED if _is_blank(label) else cast(str, label)
        counts[key] = counts.get(key, 0) + n
    n_failed = sum(counts.values())
    n_passed = n_in - n_failed
    return {
        "n_passed": n_passed,
        "n_failed": n_failed,
        "fail_ratio": n_failed / n_in if n_in else None,
        "pass_ratio": n_passed / n_in if n_in else None,
        "reason_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


# --------------------------------------------------------------------------- scoring

_NOT_SCORE_TYPES: Final = (bool, str, bytes, bytearray, type(None))
# Outside this magnitude range the squared deviations could overflow or underflow (a nonzero
# deviation is at least ~2**-52 of the largest |score|), so scores are rescaled first.
_RESCALE_ABOVE: Final = 2.0**480
_RESCALE_BELOW: Final = 2.0**-400


def _is_score_type(tp: type) -> bool:
    if issubclass(tp, _NOT_SCORE_TYPES):
        return False
    # numpy.bool_ converts to float but is a flag, not a score (checked by name: no numpy import).
    return not (tp.__module__ == "numpy" and tp.__name__ in ("bool", "bool_"))


def _finite_floats(scores: Sequence[object]) -> list[float]:
    types = set(map(type, scores))
    accepted = {tp for tp in types if _is_score_type(tp)}
    if all(issubclass(tp, (float, int)) for tp in accepted):
        # Fast path (plain floats/ints, maybe None): C-level filter, no per-item branch.
        values = scores if accepted == types else [x for x in scores if type(x) in accepted]
        try:
            return list(map(float, filter(math.isfinite, cast(Sequence[float], values))))
        except OverflowError:  # an int too large for a float: junk, let the slow path drop it
            pass
    out: list[float] = []
    append = out.append
    for x in scores:
        if type(x) not in accepted:
            continue
        try:
            f = float(cast(SupportsFloat, x))
        except (TypeError, ValueError, OverflowError):
            continue
        if math.isfinite(f):
            append(f)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std (ddof=0), two-pass with ``fsum`` and the compensated correction."""
    n = len(values)
    mean = math.fsum(values) / n
    dev = [x - mean for x in values]
    ss = math.fsum(map(mul, dev, dev)) - math.fsum(dev) ** 2 / n
    return mean, math.sqrt(max(ss, 0.0) / n)


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's _lerp: anchored at the nearer end, so it is exact at t=0/1 and monotone in t.
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def _percentile(ordered: list[float], q: float) -> float:
    """numpy's default 'linear' method: virtual index (n - 1) * q between the closest ranks."""
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    if lo + 1 >= len(ordered):
        return ordered[-1]
    return _lerp(ordered[lo], ordered[lo + 1], h - lo)


def scoring_metrics(scores: Sequence[object]) -> ScoringMetrics:
    """Distribution of the finite real scores; everything else counts in ``n_score_null``.

    A score is anything ``float()`` converts to a finite value, except bool (also numpy's),
    str and bytes: None, NaN, +-inf, strings, too-large ints and other junk are skipped.
    Std is the population std (ddof=0); p50/p90 use numpy's default 'linear' interpolation.
    All float metrics are None when there is no valid score.
    """
    values = _finite_floats(scores)
    n_null = len(scores) - len(values)
    if not values:
        return {
            "score_min": None,
            "score_max": None,
            "score_mean": None,
            "score_std": None,
            "score_p50": None,
            "score_p90": None,
            "n_score_null": n_null,
        }
    values.sort()
    lo, hi = values[0], values[-1]
    if lo == hi:
        mean, std = lo, 0.0
    else:
        big = max(-lo, hi)
        if not _RESCALE_BELOW < big < _RESCALE_ABOVE:  # by a power of two: exact
            shift = math.frexp(big)[1]
            mean, std = _mean_std([math.ldexp(x, -shift) for x in values])
            mean, std = math.ldexp(mean, shift), math.ldexp(std, shift)
        else:
            mean, std = _mean_std(values)
        mean = min(max(mean, lo), hi)
    return {
        "score_min": lo,
        "score_max": hi,
        "score_mean": mean,
        "score_std": std,
        "score_p50": _percentile(values, 0.5),
        "score_p90": _percentile(values, 0.9),
        "n_score_null": n_null,
    }


# --------------------------------------------------------------------------- ranking

# Runs this short are sorted by insertion before merging; 1024 measured fastest.
_INSERTION_RUN: Final = 1024

_H = TypeVar("_H", bound=Hashable)


def _count_inversions(seq: list[int]) -> int:
    """Pairs i < j with seq[i] > seq[j], for distinct non-negative ints, in O(n log n).

    Bottom-up merge sort whose per-item work is all C-level: each value is shifted left to free
    one tag bit per merge level; at a merge the right run's items get that level's bit, the two
    runs are merged by ``list.sort`` (timsort merges two runs in linear time) and the tagged
    positions tell, for each right item, how many left items are smaller.
    """
    if all(map(lt, seq, islice(seq, 1, None))):  # order kept: common for filtering stages
        return 0
    inversions = 0
    runs: list[list[int]] = []
    for start in range(0, len(seq), _INSERTION_RUN):
        run: list[int] = []
        for x in seq[start : start + _INSERTION_RUN]:
            i = bisect_right(run, x)
            inversions += len(run) - i
            run.insert(i, x)
        runs.append(run)
    n_levels = (len(runs) - 1).bit_length()
    runs = [list(map(lshift, run, repeat(n_levels))) for run in runs]
    bit = 1
    while len(runs) > 1:
        merged: list[list[int]] = []
        for j in range(0, len(runs) - 1, 2):
            left, right = runs[j], runs[j + 1]
            n_left, n_right = len(left), len(right)
            left.extend(map(or_, right, repeat(bit)))
            left.sort()
            # The k-th right item at merged position p has p - k smaller left items.
            right_positions = sum(compress(count(), map(and_, left, repeat(bit))))
            smaller = right_positions - n_right * (n_right - 1) // 2
            inversions += n_left * n_right - smaller
            merged.append(left)
        if len(runs) % 2:
            merged.append(runs[-1])
        runs = merged
        bit <<= 1
    return inversions


def _first_positions(ids: Sequence[_H]) -> dict[_H, int]:
    # Built back to front so each id keeps the index of its first occurrence.
    return dict(zip(reversed(ids), range(len(ids) - 1, -1, -1), strict=True))


def ranking_metrics(
    in_ids: Sequence[Hashable], out_ids: Sequence[Hashable], k: int = 10
) -> RankingMetrics:
    """How the stage reordered the candidates present both before and after it.

    Items are matched by id (repeated ids: first occurrence), positions are indices in the full
    ``in_ids`` / ``out_ids``. ``rank_kendall_tau`` is Kendall tau-a over the common items (no ties
    are possible, so it equals tau-b): 1.0 same order, -1.0 reversed, None below 2 common items.
    ``topk_overlap`` is ``|set(in[:k]) & set(out[:k])| / min(k, len(in), len(out))``, None when
    that denominator is 0. Raises ValueError for negative ``k``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    in_pos = _first_positions(in_ids)
    # Input position of each output slot (-1: not an input). in_pos is one-to-one, so keeping the
    # first occurrence of each position keeps the first occurrence of each id.
    got = list(map(in_pos.get, out_ids, repeat(-1)))
    firsts = dict.fromkeys(got)
    firsts.pop(-1, None)
    seq_in = list(firsts)  # input positions of the common items, in output order
    n = len(seq_in)
    if n == len(got):  # no new or repeated ids: output positions are 0..n-1
        seq_out: Sequence[int] = range(n)
    else:
        out_pos = _first_positions(got)
        seq_out = list(map(out_pos.__getitem__, seq_in))

    tau: float | None = None
    if n >= 2:
        pairs = n * (n - 1) // 2
        tau = (pairs - 2 * _count_inversions(seq_in)) / pairs
    displacement = sum(map(abs, map(sub, seq_in, seq_out))) / n if n else None

    denom = min(k, len(in_ids), len(out_ids))
    overlap = len(set(in_ids[:k]).intersection(out_ids[:k])) / denom if denom else None
    return {
        "rank_kendall_tau": tau,
        "rank_mean_displacement": displacement,
        "topk_overlap": overlap,
    }


# --------------------------------------------------------------------------- retrieval


def retrieval_metrics(ids: Sequence[Hashable | None]) -> RetrievalMetrics:
    """Distinct ids among the candidates that have one (None = no id, ignored).

    ``duplicate_ratio = 1 - n_unique / n_with_id``: the share of id-bearing candidates that
    repeat an earlier id; None when no candidate has an id.
    """
    unique = set(ids)
    unique.discard(None)
    n_with_id = len(ids) - ids.count(None)
    n_unique = len(unique)
    return {
        "n_unique": n_unique,
        "duplicate_ratio": (n_with_id - n_unique) / n_with_id if n_with_id else None,
    }


# --------------------------------------------------------------------------- generation


def generation_metrics(n_out: int, reasons: Sequence[str | None]) -> GenerationMetrics:
    """Output count and how many outputs lack a reason (None, empty or whitespace-only).

    ``reasons`` holds one entry per generated candidate; raises ValueError otherwise.
    """
    if n_out < 0:
        raise ValueError(f"n_out must be >= 0, got {n_out}")
    if len(reasons) != n_out:
        raise ValueError(f"expected {n_out} reasons, got {len(reasons)}")
    return {"n_generated": n_out, "n_empty_reason": sum(map(_is_blank, reasons))}
