"""Scale controls: per-stage row sampling (`xr.Sample`) and per-stage size caps (`xr.Caps`)."""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Callable
from typing import Annotated, Any

import pytest

import xray_lake as xr
from tests._captured import Captured, Tables
from xray_lake.records.options import candidate_hash

Recorded = Callable[[], Captured]
Item = dict[str, Any]


def _verdicts(n: int, fail_every: int = 4) -> list[Item]:
    """n candidates; most fail (reason 'price' or 'brand'), every `fail_every`-th passes."""
    return [{"id": f"c{i}", "ok": i % fail_every == 0,
             "why": None if i % fail_every == 0 else ("price" if i % 2 else "brand")}
            for i in range(n)]


def _filter(run: xr.Run, name: str, items: list[Item], **options: Any) -> None:
    with run.stage(name, type="filtering", passed="ok", reason_label="why", **options) as st:
        st.input(items)
        st.output(items)


def _stored(db: Tables, stage: str, run_id: str | None = None) -> set[str]:
    where = f"stage_name = '{stage}'" + (f" and run_id = '{run_id}'" if run_id else "")
    rows = db.sql(f"select candidate_id from candidates where {where}").to_dicts()
    return {r["candidate_id"] for r in rows}


def _stage_row(db: Tables, name: str) -> Item:
    rows = db.sql(f"select * from stages where name = '{name}'").to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_hash_is_crc32_of_salt_nul_id() -> None:
    assert candidate_hash("c1") == zlib.crc32(b"\x00c1") / 2**32
    assert candidate_hash("c1", "s") == zlib.crc32(b"s\x00c1") / 2**32


def test_failed_rate_keeps_every_passed_and_about_rate_of_failed_with_exact_metrics(
    captured: Recorded,
) -> None:
    items = _verdicts(2000)
    with xr.run("p", run_id="r1") as run:
        _filter(run, "f", items, sample=xr.Sample(failed=0.1))

    db = captured()
    stored = _stored(db, "f")
    passed = {x["id"] for x in items if x["ok"]}
    failed = [x["id"] for x in items if not x["ok"]]
    assert passed <= stored
    expected_failed = {i for i in failed if candidate_hash(i) < 0.1}
    assert stored - passed == expected_failed
    assert 0.06 * len(failed) < len(expected_failed) < 0.14 * len(failed)

    row = _stage_row(db, "f")
    assert (row["n_in"], row["n_out"]) == (2000, 500)
    metrics = db.sql("select n_passed, n_failed from stages").to_dicts()[0]
    assert (metrics["n_passed"], metrics["n_failed"]) == (500, 1500)
    assert dict(row["reason_counts"]) == {"price": 1000, "brand": 500}
    assert row["sampled"] is True
    assert row["n_candidates_stored"] == len(stored) == 500 + len(expected_failed)
    assert row["sample_rate"] == pytest.approx(len(stored) / 2000)


def test_max_failed_keeps_the_failed_with_the_smallest_hashes(captured: Recorded) -> None:
    items = _verdicts(300)

    @xr.filtering_stage("f", passed="ok", reason_label="why", sample=xr.Sample(max_failed=20))
    def keep(products: list[Item]) -> list[Item]:
        return products

    keep(items)
    db = captured()
    failed = sorted((x["id"] for x in items if not x["ok"]), key=candidate_hash)
    stored = _stored(db, "f")
    assert stored == {x["id"] for x in items if x["ok"]} | set(failed[:20])
    row = _stage_row(db, "f")
    assert (row["n_candidates_stored"], row["sampled"]) == (75 + 20, True)
    assert dict(row["reason_counts"]) == {"price": 150, "brand": 75}


def test_survivors_only_filter_is_sampled_too(captured: Recorded) -> None:
    items = [{"id": f"c{i}"} for i in range(200)]

    @xr.filtering_stage("f", sample=xr.Sample(failed=0.0))
    def keep(products: list[Item]) -> list[Item]:
        return products[:10]

    keep(items)
    db = captured()
    assert _stored(db, "f") == {f"c{i}" for i in range(10)}
    row = _stage_row(db, "f")
    assert (row["n_in"], row["n_out"], row["sample_rate"]) == (200, 10, pytest.approx(0.05))


def test_same_candidate_is_kept_or_dropped_alike_across_stages_and_runs_unless_salted(
    captured: Recorded,
) -> None:
    items = [{**x, "ok": False, "why": "x"} for x in _verdicts(400)]
    for run_id in ("r1", "r2"):
        with xr.run("p", run_id=run_id) as run:
            _filter(run, "a", items, sample=xr.Sample(failed=0.3))
            _filter(run, "b", items, sample=xr.Sample(failed=0.3))
            _filter(run, "salted", items, sample=xr.Sample(failed=0.3, salt="run"))

    db = captured()
    a1, b1, a2 = _stored(db, "a", "r1"), _stored(db, "b", "r1"), _stored(db, "a", "r2")
    assert a1 == b1 == a2
    assert 60 < len(a1) < 180
    s1, s2 = _stored(db, "salted", "r1"), _stored(db, "salted", "r2")
    assert s1 != s2 and s1 != a1
    assert s1 == {x["id"] for x in items if candidate_hash(x["id"], "r1") < 0.3}


def test_candidates_without_an_id_are_always_kept(captured: Recorded) -> None:
    items = [{"id": None if i < 5 else f"c{i}", "ok": False} for i in range(50)]
    with xr.run("p", run_id="r1") as run:
        _filter(run, "f", items, sample=xr.Sample(failed=0.0))
    db = captured()
    rows = db.sql("select candidate_id from candidates").to_dicts()
    assert [r["candidate_id"] for r in rows] == [None] * 5
    assert _stage_row(db, "f")["n_candidates_stored"] == 5


def test_ranking_keeps_top_and_samples_the_rest(captured: Recorded) -> None:
    items = [{"id": f"c{i}"} for i in range(500)]

    @xr.ranking_stage("rank", sample=xr.Sample(top=10, rest=0.2, max_rest=30))
    def rank(products: list[Item]) -> list[Item]:
        return products[::-1]

    rank(items)
    db = captured()
    rows = db.sql("select candidate_id, out_position from candidates").to_dicts()
    top = {r["candidate_id"] for r in rows if r["out_position"] < 10}
    assert top == {f"c{i}" for i in range(490, 500)}
    rest = [f"c{i}" for i in range(490) if candidate_hash(f"c{i}") < 0.2]
    assert len(rest) > 30
    assert {r["candidate_id"] for r in rows} - top == set(sorted(rest, key=candidate_hash)[:30])
    row = _stage_row(db, "rank")
    assert (row["n_in"], row["n_out"], row["n_candidates_stored"]) == (500, 500, 40)
    assert row["sampled"] is True and row["sample_rate"] == pytest.approx(40 / 500)
    assert db.sql("select rank_kendall_tau from stages").to_dicts()[0]["rank_kendall_tau"] == (
        pytest.approx(-1.0))


def test_scoring_top_is_by_score_and_max_rest_bounds_the_rest(captured: Recorded) -> None:
    items = [{"id": f"c{i}", "score": (i * 37) % 300} for i in range(300)]

    @xr.scoring_stage("score", sample=xr.Sample(top=100, max_rest=5))
    def score(products: list[Item]) -> list[Item]:
        return products

    score(items)
    db = captured()
    rows = db.sql("select candidate_id, score from candidates").to_dicts()
    best = {x["id"] for x in sorted(items, key=lambda x: -x["score"])[:100]}
    assert best <= {r["candidate_id"] for r in rows}
    assert len(rows) == 105
    row = db.sql("select * from stages").to_dicts()[0]
    assert (row["score_max"], row["score_min"], row["n_candidates_stored"]) == (299, 0, 105)


def test_top_alone_keeps_only_the_top(captured: Recorded) -> None:
    with xr.run("p") as run, run.stage("r", type="ranking", sample=xr.Sample(top=3)) as st:
        items = [{"id": f"c{i}"} for i in range(20)]
        st.input(items)
        st.output(items)
    assert _stored(captured(), "r") == {"c0", "c1", "c2"}


def test_no_sampling_when_nothing_is_dropped(captured: Recorded) -> None:
    items = _verdicts(40)
    with xr.run("p") as run:
        _filter(run, "f", items, sample=xr.Sample(max_failed=1000))
    row = _stage_row(captured(), "f")
    assert (row["sampled"], row["sample_rate"], row["n_candidates_stored"]) == (False, 1.0, 40)


def test_stage_caps_override_the_global_ones_and_count_truncation(captured: Recorded) -> None:
    items = [{"id": f"c{i}", "ok": False, "why": "x", "text": "t" * 500, "blurb": "b" * 100}
             for i in range(4)]

    @xr.filtering_stage("capped", passed="ok", reason_label="why", reason_text="blurb",
                        caps=xr.Caps(payload_bytes=200, reason_chars=50, raw_bytes=100))
    def capped(products: Annotated[list[Item], xr.Candidates()], note: str) -> list[Item]:
        return products

    @xr.filtering_stage("global", passed="ok", reason_label="why", reason_text="blurb")
    def plain(products: Annotated[list[Item], xr.Candidates()], note: str) -> list[Item]:
        return products

    with xr.run("p"):
        capped(items, "n" * 300)
        plain(items, "n" * 300)
    db = captured()
    capped_row, global_row = _stage_row(db, "capped"), _stage_row(db, "global")
    # 4 payloads + 4 reason texts + the raw input
    assert capped_row["n_truncated"] == 9
    assert global_row["n_truncated"] == 0
    rows = db.sql("select payload, reason_text from candidates "
                  "where stage_name = 'capped'").to_dicts()
    assert all("$truncated" in json.loads(r["payload"]) for r in rows)
    assert all(r["reason_text"].startswith("b" * 50 + "…[+50") for r in rows)
    assert "$truncated" in json.loads(capped_row["input_json"])


def test_caps_apply_to_stage_blocks_and_raw_stages(captured: Recorded) -> None:
    with xr.run("p") as run:
        with run.stage("g", type="generation", reason="why",
                       caps=xr.Caps(reason_chars=5)) as st:
            st.output([{"id": "a", "why": "long reason"}])
        with run.stage("raw", caps=xr.Caps(raw_bytes=10)) as raw:
            raw.output("x" * 50)
    db = captured()
    assert _stage_row(db, "raw")["n_truncated"] == 1
    # a generation stage's reason is reason text too: capped by reason_chars
    assert _stage_row(db, "g")["n_truncated"] == 1
    reason = db.sql("select reason from candidates where stage_name = 'g'").item()
    assert reason == "long …[+6 chars]"


def _bad(decorate: Callable[[Any], Any]) -> str:
    def stage_fn(products: list[Item]) -> list[Item]:
        return products

    with pytest.raises(xr.DecorationError) as caught:
        decorate(stage_fn)
    message = str(caught.value)
    assert "stage_fn" in message and "Fix:" in message
    return message


@pytest.mark.parametrize(("decorator", "match"), [
    (xr.filtering_stage("f", sample=xr.Sample(failed=1.5)), "rate in [0, 1]"),
    (xr.filtering_stage("f", sample=xr.Sample(failed=-0.1)), "rate in [0, 1]"),
    (xr.filtering_stage("f", sample=xr.Sample(max_failed=-1)), "non-negative"),
    (xr.filtering_stage("f", max_failed=-5), "non-negative"),
    (xr.filtering_stage("f", sample=xr.Sample()), "sets nothing"),
    (xr.filtering_stage("f", sample=xr.Sample(top=5)), "do not apply to a filtering"),
    (xr.scoring_stage("s", sample=xr.Sample(failed=0.1)), "only to filtering"),
    (xr.ranking_stage("r", sample=xr.Sample(top=0)), "positive"),
    (xr.ranking_stage("r", sample=xr.Sample(rest=2.0)), "rate in [0, 1]"),
    (xr.ranking_stage("r", sample=xr.Sample(top=3), max_out_of_top=4), "both sample="),
    (xr.filtering_stage("f", sample=0.5), "not an xr.Sample"),  # type: ignore[arg-type]
    (xr.filtering_stage("f", caps=xr.Caps(payload_bytes=0)), "positive integer"),
    (xr.scoring_stage("s", caps=xr.Caps(reason_chars=-3)), "positive integer"),
    (xr.raw_stage("raw", caps=xr.Caps(raw_bytes=-1)), "positive integer"),
])
def test_bad_scale_options_raise_at_decoration(decorator: Callable[[Any], Any],
                                               match: str) -> None:
    assert match in _bad(decorator)


def test_bad_scale_options_raise_in_stage_blocks() -> None:
    with pytest.raises(xr.DecorationError, match="Fix:"):
        xr.stage("f", type="filtering", sample=xr.Sample(failed=3))
    with pytest.raises(xr.DecorationError, match="max_failed"):
        xr.stage("s", type="scoring", max_failed=3)
    with pytest.raises(xr.DecorationError, match="positive integer"):
        xr.stage("s", type="scoring", caps=xr.Caps(raw_bytes=0))


# --- the deprecated shortcuts ---------------------------------------------------------------


def test_max_failed_shortcut_warns_once_at_decoration_and_stores_what_sample_does(
        captured: Recorded) -> None:
    items = _verdicts(300)
    with pytest.warns(DeprecationWarning, match=r"sample=xr\.Sample\(max_failed=20\)") as caught:
        @xr.filtering_stage("old", passed="ok", reason_label="why", max_failed=20)
        def old(products: list[Item]) -> list[Item]:
            return products
    assert len(caught) == 1 and caught[0].filename == __file__  # the user's decorator line

    @xr.filtering_stage("new", passed="ok", reason_label="why", sample=xr.Sample(max_failed=20))
    def new(products: list[Item]) -> list[Item]:
        return products

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # calling the stage warns no more
        old(items)
        old(items)
        new(items)
    db = captured()
    assert _stored(db, "old") == _stored(db, "new")


def test_max_out_of_top_shortcut_warns_and_means_top_100_plus_max_rest(captured: Recorded) -> None:
    items = [{"id": f"c{i}", "score": (i * 37) % 300} for i in range(300)]
    with pytest.warns(DeprecationWarning,
                      match=r"sample=xr\.Sample\(top=100, max_rest=5\)") as caught:
        @xr.scoring_stage("old", max_out_of_top=5)
        def old(products: list[Item]) -> list[Item]:
            return products
    assert len(caught) == 1 and caught[0].filename == __file__

    @xr.scoring_stage("new", sample=xr.Sample(top=100, max_rest=5))
    def new(products: list[Item]) -> list[Item]:
        return products

    old(items)
    new(items)
    db = captured()
    assert _stored(db, "old") == _stored(db, "new") and len(_stored(db, "old")) == 105


def test_shortcuts_in_stage_blocks_warn_too() -> None:
    with pytest.warns(DeprecationWarning, match="max_failed=3 is deprecated") as caught:
        xr.stage("f", type="filtering", max_failed=3)
    assert caught[0].filename == __file__
