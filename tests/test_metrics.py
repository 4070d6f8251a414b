"""Behaviour of the per-stage metric functions, against hand-computed values and references."""

from __future__ import annotations

import math
import random
import statistics
import sys
from collections.abc import Hashable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import get_type_hints
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xray_lake.records import metrics
from xray_lake.records.metrics import (
    METRIC_COLUMNS,
    UNLABELLED,
    FilteringMetrics,
    GenerationMetrics,
    RankingMetrics,
    RetrievalMetrics,
    ScoringMetrics,
    filtering_metrics,
    generation_metrics,
    ranking_metrics,
    retrieval_metrics,
    scoring_metrics,
)

NAN = float("nan")
INF = float("inf")


# --------------------------------------------------------------------------- filtering


def test_filtering_counts_pass_fail_and_ratios() -> None:
    # 5 candidates: passed are #0 and #4 -> n_passed=2, n_failed=3, 3/5=0.6, 2/5=0.4
    result = filtering_metrics(
        5, [True, False, False, False, True], ["x", "dup", "stale", "dup", "y"]
    )
    assert result == {
        "n_passed": 2,
        "n_failed": 3,
        "fail_ratio": 0.6,
        "pass_ratio": 0.4,
        "reason_counts": {"dup": 2, "stale": 1},
    }


def test_filtering_counts_none_passed_as_failed() -> None:
    # None = unknown -> failed: failed are #1 (None) and #2 (False) -> 2/3 failed
    result = filtering_metrics(3, [True, None, False], [None, "timeout", "dup"])
    assert result["n_passed"] == 1
    assert result["n_failed"] == 2
    assert result["fail_ratio"] == pytest.approx(2 / 3)
    assert result["reason_counts"] == {"dup": 1, "timeout": 1}


def test_filtering_counts_unlabelled_failures_under_unlabelled_key() -> None:
    # failed labels None, "", "  " all go to UNLABELLED (3); "dup" once
    result = filtering_metrics(4, [False, False, False, False], [None, "", "  ", "dup"])
    assert result["reason_counts"] == {UNLABELLED: 3, "dup": 1}


def test_filtering_ignores_labels_of_passed_candidates() -> None:
    result = filtering_metrics(3, [True, True, False], ["dup", None, "geo"])
    assert result["reason_counts"] == {"geo": 1}


def test_filtering_orders_reason_counts_by_count_then_label() -> None:
    labels = ["b", "a", "c", "c", "b", "c"]  # c:3, a:1, b:2
    result = filtering_metrics(6, [False] * 6, labels)
    assert list(result["reason_counts"].items()) == [("c", 3), ("b", 2), ("a", 1)]


def test_filtering_with_no_input_has_no_ratios() -> None:
    assert filtering_metrics(0, [], []) == {
        "n_passed": 0,
        "n_failed": 0,
        "fail_ratio": None,
        "pass_ratio": None,
        "reason_counts": {},
    }


def test_filtering_all_passed_has_zero_fail_ratio_and_no_reasons() -> None:
    result = filtering_metrics(2, [True, True], [None, None])
    assert (result["fail_ratio"], result["pass_ratio"], result["reason_counts"]) == (0.0, 1.0, {})


@pytest.mark.parametrize(
    ("n_in", "passed", "labels"),
    [(3, [True, False], [None, None, None]), (2, [True, False], [None]), (-1, [], [])],
)
def test_filtering_rejects_lengths_that_disagree_with_n_in(
    n_in: int, passed: list[bool | None], labels: list[str | None]
) -> None:
    with pytest.raises(ValueError):
        filtering_metrics(n_in, passed, labels)


@given(st.lists(st.tuples(st.sampled_from([True, False, None]), st.sampled_from(["a", "", None]))))
def test_filtering_counts_add_up(rows: list[tuple[bool | None, str | None]]) -> None:
    passed = [p for p, _ in rows]
    result = filtering_metrics(len(rows), passed, [label for _, label in rows])
    assert result["n_passed"] == sum(p is True for p in passed)
    assert result["n_passed"] + result["n_failed"] == len(rows)
    assert sum(result["reason_counts"].values()) == result["n_failed"]


# --------------------------------------------------------------------------- scoring


def test_scoring_summarises_floats() -> None:
    # sorted [1, 1, 3, 4, 5]; mean 14/5 = 2.8
    # deviations -1.8 -1.8 0.2 1.2 2.2 -> squares 3.24+3.24+0.04+1.44+4.84 = 12.8; /5 = 2.56 -> std 1.6
    # p50: h = 4*0.5 = 2 -> 3; p90: h = 4*0.9 = 3.6 -> 4 + 0.6*(5-4) = 4.6
    result = scoring_metrics([3.0, 1.0, 4.0, 1.0, 5.0])
    assert result == pytest.approx(
        {
            "score_min": 1.0,
            "score_max": 5.0,
            "score_mean": 2.8,
            "score_std": 1.6,
            "score_p50": 3.0,
            "score_p90": 4.6,
            "n_score_null": 0,
        }
    )


def test_scoring_accepts_ints_and_returns_floats() -> None:
    # mean 10/4 = 2.5; squares 2.25+0.25+0.25+2.25 = 5; /4 = 1.25 -> std sqrt(1.25)
    # p50: h = 1.5 -> 2 + 0.5*1 = 2.5; p90: h = 2.7 -> 3 + 0.7*1 = 3.7
    result = scoring_metrics([4, 1, 3, 2])
    assert result["score_min"] == 1.0 and isinstance(result["score_min"], float)
    assert result["score_mean"] == 2.5
    assert result["score_std"] == pytest.approx(math.sqrt(1.25))
    assert result["score_p50"] == 2.5
    assert result["score_p90"] == pytest.approx(3.7)


def test_scoring_interpolates_percentiles_across_ties() -> None:
    # sorted [2, 2, 2, 7]: p50 h = 1.5 -> between 2 and 2 = 2; p90 h = 2.7 -> 2 + 0.7*(7-2) = 5.5
    # mean 13/4 = 3.25; squares 3*1.5625 + 14.0625 = 18.75; /4 = 4.6875
    result = scoring_metrics([2.0, 7.0, 2.0, 2.0])
    assert result["score_p50"] == 2.0
    assert result["score_p90"] == pytest.approx(5.5)
    assert result["score_std"] == pytest.approx(math.sqrt(4.6875))


def test_scoring_skips_and_counts_junk_scores() -> None:
    scores: list[object] = [
        None, NAN, INF, -INF, "3", b"3", True, False, np.True_, 1 + 2j, object(), 10**400,
        Decimal("NaN"),
        2.0, Decimal("4"), Fraction(1, 2), np.float32(1.5), np.int64(3),
    ]  # fmt: skip
    # valid: 2.0, 4, 0.5, 1.5, 3 -> sorted [0.5, 1.5, 2, 3, 4], mean 11/5 = 2.2; 13 junk
    result = scoring_metrics(scores)
    assert result["n_score_null"] == 13
    assert (result["score_min"], result["score_max"]) == (0.5, 4.0)
    assert result["score_mean"] == pytest.approx(2.2)
    assert result["score_p50"] == 2.0


def test_scoring_skips_none_nan_and_inf_among_plain_floats() -> None:
    # valid 1.0, 3.0 -> mean 2, std 1, p50 2, p90 1 + 0.9*2 = 2.8
    result = scoring_metrics([1.0, None, NAN, 3.0, INF])
    assert result == pytest.approx(
        {
            "score_min": 1.0,
            "score_max": 3.0,
            "score_mean": 2.0,
            "score_std": 1.0,
            "score_p50": 2.0,
            "score_p90": 2.8,
            "n_score_null": 3,
        }
    )


@pytest.mark.parametrize("scores", [[], [NAN, NAN, NAN], [None, "x", INF]])
def test_scoring_without_valid_scores_is_all_none(scores: list[object]) -> None:
    result = scoring_metrics(scores)
    assert result["n_score_null"] == len(scores)
    assert all(v is None for k, v in result.items() if k != "n_score_null")


def test_scoring_single_score_has_zero_std() -> None:
    result = scoring_metrics([4.2])
    assert result == {
        "score_min": 4.2,
        "score_max": 4.2,
        "score_mean": 4.2,
        "score_std": 0.0,
        "score_p50": 4.2,
        "score_p90": 4.2,
        "n_score_null": 0,
    }


def test_scoring_constant_scores_have_exact_mean_and_zero_std() -> None:
    # a naive sum(0.1 * 7) / 7 is 0.09999999999999999; constant input must give 0.1 and std 0
    result = scoring_metrics([0.1] * 7)
    assert (result["score_mean"], result["score_std"]) == (0.1, 0.0)


@pytest.mark.parametrize(
    "scores", [[1e308, -1e308, 1e308, 5e307], [0.0, 1.2589357447408269e-284, 5e-324]]
)
def test_scoring_huge_or_tiny_scores_do_not_overflow_or_underflow(scores: list[float]) -> None:
    exact = [Fraction(x) for x in scores]
    result = scoring_metrics(scores)
    assert result["score_mean"] == pytest.approx(float(statistics.mean(exact)), rel=1e-12)
    assert result["score_std"] == pytest.approx(statistics.pstdev(exact), rel=1e-12)


def test_scoring_mean_is_exactly_rounded() -> None:
    # fsum: 1e16 + 1 + -1e16 = 1 exactly (a plain sum gives 0) -> mean 1/3
    assert scoring_metrics([1e16, 1.0, -1e16])["score_mean"] == pytest.approx(1 / 3)


def _reference_percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, straight from the definition."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


finite_scores = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
junk = st.sampled_from([None, NAN, INF, -INF, "1.0", True])


@pytest.mark.slow
@settings(max_examples=300)
@given(st.lists(st.one_of(finite_scores, finite_scores, finite_scores, junk), max_size=60))
def test_scoring_matches_numpy_and_reference_implementation(scores: list[object]) -> None:
    valid = [
        x for x in scores if isinstance(x, float) and not isinstance(x, bool) and math.isfinite(x)
    ]
    result = scoring_metrics(scores)
    assert result["n_score_null"] == len(scores) - len(valid)
    if not valid:
        assert result["score_p50"] is None and result["score_p90"] is None
        return
    scale = max(map(abs, valid)) or 1.0
    # Interpolating between subnormals may round either way by one ulp (5e-324 vs 0.0): the
    # absolute floor is the smallest normal float, far below any score a pipeline produces.
    approx = {"rel": 1e-9, "abs": max(1e-12 * scale, sys.float_info.min)}
    p50, p90 = np.percentile(valid, [50, 90])
    assert result["score_p50"] == pytest.approx(p50, **approx)
    assert result["score_p90"] == pytest.approx(p90, **approx)
    assert result["score_p50"] == pytest.approx(_reference_percentile(valid, 0.5), **approx)
    assert result["score_p90"] == pytest.approx(_reference_percentile(valid, 0.9), **approx)
    assert result["score_mean"] == pytest.approx(statistics.fmean(valid), **approx)
    assert result["score_std"] == pytest.approx(statistics.pstdev(valid), **approx)
    assert (result["score_min"], result["score_max"]) == (min(valid), max(valid))


# --------------------------------------------------------------------------- ranking


def test_ranking_identical_order_has_tau_one() -> None:
    ids = ["a", "b", "c", "d"]
    assert ranking_metrics(ids, list(ids)) == {
        "rank_kendall_tau": 1.0,
        "rank_mean_displacement": 0.0,
        "topk_overlap": 1.0,
    }


def test_ranking_reversed_order_has_tau_minus_one() -> None:
    # displacement |0-3| + |1-2| + |2-1| + |3-0| = 8; 8/4 = 2
    result = ranking_metrics(["a", "b", "c", "d"], ["d", "c", "b", "a"])
    assert result == {
        "rank_kendall_tau": -1.0,
        "rank_mean_displacement": 2.0,
        "topk_overlap": 1.0,  # top-10 of 4 items: all 4 shared, denominator min(10, 4, 4)
    }


def test_ranking_one_adjacent_swap_in_four_items() -> None:
    # 6 pairs, only (b, c) discordant: (5 - 1) / 6 = 2/3; displacement (0+1+1+0)/4 = 0.5
    result = ranking_metrics(["a", "b", "c", "d"], ["a", "c", "b", "d"])
    assert result["rank_kendall_tau"] == pytest.approx(2 / 3)
    assert result["rank_mean_displacement"] == 0.5


def test_ranking_swap_of_first_and_last_in_four_items() -> None:
    # a<->d: discordant (a,b) (a,c) (a,d) (b,d) (c,d) = 5, concordant (b,c) = 1 -> (1-5)/6 = -2/3
    # displacement (3+0+0+3)/4 = 1.5
    result = ranking_metrics(["a", "b", "c", "d"], ["d", "b", "c", "a"])
    assert result["rank_kendall_tau"] == pytest.approx(-2 / 3)
    assert result["rank_mean_displacement"] == 1.5


def test_ranking_compares_only_items_present_in_both() -> None:
    # b, d dropped; x, y new. Common in output order: c, a, e
    # in positions 2, 0, 4; out positions 1, 2, 4
    # pairs: (c,a) discordant, (c,e) and (a,e) concordant -> (2-1)/3 = 1/3
    # displacement |2-1| + |0-2| + |4-4| = 3; 3/3 = 1
    # top-3: {a,b,c} & {x,c,a} = {a,c} -> 2 / min(3, 5, 5) = 2/3
    result = ranking_metrics(["a", "b", "c", "d", "e"], ["x", "c", "a", "y", "e"], k=3)
    assert result["rank_kendall_tau"] == pytest.approx(1 / 3)
    assert result["rank_mean_displacement"] == 1.0
    assert result["topk_overlap"] == pytest.approx(2 / 3)


def test_ranking_uses_first_occurrence_of_repeated_ids() -> None:
    # in first positions a0 b1 c3; out first positions c0 a1 b3; out order c, a, b
    # in positions 3, 0, 1: (c,a) (c,b) discordant, (a,b) concordant -> (1-2)/3 = -1/3
    # displacement |3-0| + |0-1| + |1-3| = 6; 6/3 = 2
    # top-10: {a,b,c} & {c,a,b} = 3 / min(10, 4, 4) = 0.75
    result = ranking_metrics(["a", "b", "a", "c"], ["c", "a", "c", "b"])
    assert result["rank_kendall_tau"] == pytest.approx(-1 / 3)
    assert result["rank_mean_displacement"] == 2.0
    assert result["topk_overlap"] == 0.75


def test_ranking_with_one_common_item_has_no_tau() -> None:
    # only "b": positions 1 and 0 -> displacement 1; top-10 {a,b} & {b,z} = 1 / 2
    assert ranking_metrics(["a", "b"], ["b", "z"]) == {
        "rank_kendall_tau": None,
        "rank_mean_displacement": 1.0,
        "topk_overlap": 0.5,
    }


def test_ranking_without_common_items_has_no_tau_or_displacement() -> None:
    assert ranking_metrics(["a"], ["b"]) == {
        "rank_kendall_tau": None,
        "rank_mean_displacement": None,
        "topk_overlap": 0.0,
    }


@pytest.mark.parametrize(("in_ids", "out_ids"), [([], []), (["a", "b"], []), ([], ["a"])])
def test_ranking_with_an_empty_side_is_all_none(
    in_ids: list[Hashable], out_ids: list[Hashable]
) -> None:
    assert set(ranking_metrics(in_ids, out_ids).values()) == {None}


def test_ranking_topk_overlap_uses_only_the_first_k() -> None:
    # top-2: {1,2} & {3,1} = {1} -> 1/2 ; k=0 -> denominator 0 -> None
    assert ranking_metrics([1, 2, 3, 4], [3, 1, 2, 4], k=2)["topk_overlap"] == 0.5
    assert ranking_metrics([1, 2, 3, 4], [3, 1, 2, 4], k=0)["topk_overlap"] is None


def test_ranking_rejects_negative_k() -> None:
    with pytest.raises(ValueError):
        ranking_metrics([1], [1], k=-1)


def test_ranking_treats_ids_as_opaque_hashables() -> None:
    # 1 and "1" are different ids; tuples are fine
    result = ranking_metrics([1, "1", (2, "x")], [(2, "x"), "1", 1])
    assert result["rank_kendall_tau"] == -1.0


def test_ranking_handles_100k_items() -> None:
    ids = list(range(100_000))
    assert ranking_metrics(ids, ids[::-1])["rank_kendall_tau"] == -1.0
    assert ranking_metrics(ids, ids)["rank_kendall_tau"] == 1.0


def _reference_ranking(
    in_ids: Sequence[Hashable], out_ids: Sequence[Hashable]
) -> tuple[float | None, float | None]:
    """O(n^2) Kendall tau-a and mean displacement straight from the definitions."""
    in_pos: dict[Hashable, int] = {}
    for i, x in enumerate(in_ids):
        in_pos.setdefault(x, i)
    out_pos: dict[Hashable, int] = {}
    for i, x in enumerate(out_ids):
        out_pos.setdefault(x, i)
    common = [x for x in in_pos if x in out_pos]
    n = len(common)
    displacement = sum(abs(in_pos[x] - out_pos[x]) for x in common) / n if n else None
    if n < 2:
        return None, displacement
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            a, b = common[i], common[j]
            if (in_pos[a] - in_pos[b]) * (out_pos[a] - out_pos[b]) > 0:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / (n * (n - 1) / 2), displacement


small_ids = st.lists(st.integers(0, 25), max_size=40)


@pytest.mark.slow
@settings(max_examples=300)
@given(small_ids, small_ids, st.integers(1, 5))
def test_ranking_matches_quadratic_reference(
    in_ids: list[int], out_ids: list[int], run_size: int
) -> None:
    # a tiny internal run size makes small inputs go through every merge level
    with mock.patch.object(metrics, "_INSERTION_RUN", run_size):
        result = ranking_metrics(in_ids, out_ids)
    tau, displacement = _reference_ranking(in_ids, out_ids)
    assert result["rank_kendall_tau"] == pytest.approx(tau)
    assert result["rank_mean_displacement"] == pytest.approx(displacement)


@settings(max_examples=25, deadline=None)  # n spans several 1024-item internal runs
@given(st.integers(0, 2**32 - 1), st.integers(2, 2500))
def test_ranking_matches_vectorised_reference_on_shuffled_lists(seed: int, n: int) -> None:
    rng = random.Random(seed)
    in_ids = list(range(n))
    out_ids = rng.sample(in_ids, rng.randint(n // 2, n)) + list(range(n, n + rng.randint(0, 50)))
    rng.shuffle(out_ids)
    result = ranking_metrics(in_ids, out_ids)
    # ids are their own input positions and are unique in out_ids; tau = mean sign agreement
    common = [x for x in out_ids if x < n]
    in_p = np.array(common)
    out_p = np.array([i for i, x in enumerate(out_ids) if x < n])
    sign = np.sign(in_p[:, None] - in_p[None, :]) * np.sign(out_p[:, None] - out_p[None, :])
    m = len(common)
    tau = sign.sum() / (m * (m - 1)) if m >= 2 else None
    assert result["rank_kendall_tau"] == pytest.approx(tau)
    assert result["rank_mean_displacement"] == pytest.approx(np.abs(in_p - out_p).mean())


# --------------------------------------------------------------------------- retrieval


def test_retrieval_counts_unique_ids_and_duplicate_ratio() -> None:
    # ids with a value: a b a c b (5); unique {a, b, c} = 3 -> 1 - 3/5 = 0.4
    assert retrieval_metrics(["a", "b", "a", None, "c", "b"]) == {
        "n_unique": 3,
        "duplicate_ratio": pytest.approx(0.4),
    }


def test_retrieval_without_duplicates_has_zero_ratio() -> None:
    # 1 and "1" are distinct opaque ids: 3 unique of 3 -> 1 - 3/3 = 0
    assert retrieval_metrics([1, "1", 2]) == {"n_unique": 3, "duplicate_ratio": 0.0}


@pytest.mark.parametrize("ids", [[], [None, None]])
def test_retrieval_without_ids_has_no_duplicate_ratio(ids: list[Hashable | None]) -> None:
    assert retrieval_metrics(ids) == {"n_unique": 0, "duplicate_ratio": None}


# --------------------------------------------------------------------------- generation


def test_generation_counts_missing_and_blank_reasons() -> None:
    # None, "" and whitespace-only count as empty: 3 of 5
    result = generation_metrics(5, ["ok", None, "", " \n\t", "fine"])
    assert result == {"n_generated": 5, "n_empty_reason": 3}


def test_generation_with_no_output() -> None:
    assert generation_metrics(0, []) == {"n_generated": 0, "n_empty_reason": 0}


@pytest.mark.parametrize(("n_out", "reasons"), [(2, ["a"]), (-1, [])])
def test_generation_rejects_reason_count_that_disagrees_with_n_out(
    n_out: int, reasons: list[str | None]
) -> None:
    with pytest.raises(ValueError):
        generation_metrics(n_out, reasons)


# --------------------------------------------------------------------------- columns


def test_metric_columns_cover_every_scalar_metric_in_schema_order() -> None:
    fields: dict[str, object] = {}
    for typed in (
        FilteringMetrics,
        ScoringMetrics,
        RankingMetrics,
        RetrievalMetrics,
        GenerationMetrics,
    ):
        fields.update(get_type_hints(typed))
    del fields["reason_counts"]
    assert list(METRIC_COLUMNS) == list(fields)
    for name, hint in fields.items():
        assert METRIC_COLUMNS[name] == ("int64" if hint is int else "float64"), name
        assert pa.type_for_alias(METRIC_COLUMNS[name]) in (pa.int64(), pa.float64())


def test_every_function_returns_exactly_its_typed_keys() -> None:
    calls = [
        (FilteringMetrics, filtering_metrics(1, [False], [None])),
        (ScoringMetrics, scoring_metrics([1.0])),
        (RankingMetrics, ranking_metrics([1], [1])),
        (RetrievalMetrics, retrieval_metrics([1])),
        (GenerationMetrics, generation_metrics(1, [None])),
    ]
    for typed, result in calls:
        assert set(result) == set(get_type_hints(typed))
