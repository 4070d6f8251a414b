"""`xray-lake ui` in a real browser: Debian's chromium, driven by Playwright.

The pages are clicked through as a person would (runs -> run -> stage -> candidate) on a
demo lake, what each shows is checked against the lake's own numbers, and a screenshot of
each page is saved in the test's tmp dir. Playwright is given the system's chromium
(`executable_path`); it never downloads a browser. .ci/run installs chromium with apt.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import xray_lake as xr
from tests._ui import serving
from xray_lake.demo.fashion_search import run_demo
from xray_lake.query.journey import funnel, journey

pytestmark = pytest.mark.slow  # a browser and a demo lake: a few seconds each

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium (`apt-get install chromium`, as .ci/run does)."""
    found = os.environ.get("XRAY_LAKE_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no chromium on PATH: apt-get install chromium (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("ui-demo") / "lake")
    summary = run_demo(runs=40, root=root, seed=7, failure_rate=0.1)
    assert summary.flushed
    return root


@pytest.fixture(scope="module")
def base_url(demo_root: str) -> Iterator[str]:
    with serving(demo_root) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Playwright starts chromium with a fresh profile of its own (a new temp user data dir)."""
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def _int(text: str) -> int | None:
    text = text.strip().replace(",", "")
    return int(text) if text else None


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def test_click_through_runs_run_stage_candidate(page: Any, base_url: str, demo_root: str,
                                                tmp_path: Path) -> None:
    lake = xr.Lake(demo_root)
    n_runs = lake.sql("select count(*) from runs").item(0, 0)
    page.goto(f"{base_url}/runs")
    assert _int(page.locator("#total").first.inner_text()) == n_runs
    shown = page.locator("#runs tbody tr td:first-child a").all_inner_texts()
    newest = lake.sql("select run_id from runs order by started_at desc, run_id limit 50")
    assert shown == newest["run_id"].to_list()
    _shot(page, tmp_path, "1-runs")

    # the headline question, one click away
    page.get_by_role("link", name="A filtering stage eliminated > 90%").click()
    heavy = lake.sql("select distinct run_id from stages where type = 'filtering' "
                     "and fail_ratio > 0.9")["run_id"].to_list()
    assert heavy, "the demo always has such runs"
    assert _int(page.locator("#total").first.inner_text()) == len(heavy)
    listed = page.locator("#runs tbody tr td:first-child a").all_inner_texts()
    assert set(listed) <= set(heavy)
    assert "view=heavy-drop" in page.url  # the page is a pasteable URL
    _shot(page, tmp_path, "2-runs-heavy-drop")

    run_id = listed[0]
    page.get_by_role("link", name=run_id, exact=True).click()
    assert page.locator("#run-id").inner_text() == run_id
    expected = funnel(lake, run_id).to_dicts()
    rows = page.locator("#funnel tbody tr")
    assert rows.count() == len(expected)
    for i, stage in enumerate(expected):
        row = rows.nth(i)
        assert row.locator("td").nth(1).inner_text() == stage["name"]
        assert _int(row.locator(".n-in").inner_text()) == stage["n_in"]
        assert _int(row.locator(".n-out").inner_text()) == stage["n_out"]
        shown_ratio = row.locator(".fail-ratio").inner_text()
        assert shown_ratio == ("" if stage["fail_ratio"] is None
                               else f"{stage['fail_ratio']:.1%}")
        assert row.locator(".reasons").inner_text() == (stage["top_reasons"] or "")
    page.locator("#run-input summary").click()  # inputs are collapsible JSON
    assert page.locator("#run-input pre").is_visible()
    _shot(page, tmp_path, "3-run")

    heavy_stage = next(s for s in expected if s["type"] == "filtering"
                       and (s["fail_ratio"] or 0) > 0.9)
    page.get_by_role("link", name=heavy_stage["name"], exact=True).click()
    assert page.locator("#stage-name").inner_text() == heavy_stage["name"]
    stage_id = re.search(r"stage=([^&]+)", page.url)
    assert stage_id is not None
    counts = lake.sql("select count(*) as n, count(*) filter (where passed = false) as failed "
                      "from candidates where run_id = ? and stage_id = ?",
                      [run_id, stage_id.group(1)]).row(0, named=True)
    assert _int(page.locator("#total").first.inner_text()) == counts["n"]
    page.get_by_label("Show").select_option("failed")
    page.get_by_role("button", name="Apply").click()
    assert "show=failed" in page.url
    assert _int(page.locator("#total").first.inner_text()) == counts["failed"]
    passed = set(page.locator("#candidates tbody tr td:nth-child(4)").all_inner_texts())
    assert passed == {"false"}
    _shot(page, tmp_path, "4-stage")

    candidate_id = page.locator("#candidates tbody tr td:first-child a").first.inner_text()
    page.get_by_role("link", name=candidate_id, exact=True).click()
    path = journey(lake, run_id, candidate_id)
    assert page.locator("#verdict").inner_text() == path.verdict
    assert path.verdict.startswith(f"dropped at {heavy_stage['name']}")
    steps = page.locator("#journey tbody tr td:nth-child(2)").all_inner_texts()
    assert steps == path.steps["stage"].to_list()
    _shot(page, tmp_path, "5-candidate")
    lake.close()


def test_a_scoring_stage_has_a_histogram_and_sorts_by_score(page: Any, base_url: str,
                                                            demo_root: str,
                                                            tmp_path: Path) -> None:
    lake = xr.Lake(demo_root)
    run_id, stage_id = lake.sql("select run_id, stage_id from stages where type = 'scoring' "
                                "and n_in > 20 order by run_id limit 1").row(0)
    page.goto(f"{base_url}/stage?run={run_id}&stage={stage_id}&sort=score&dir=desc")
    bars = page.locator("#histogram rect.hist")
    assert bars.count() == 20
    scored = lake.sql("select count(score) from candidates where run_id = ? and stage_id = ?",
                      [run_id, stage_id]).item(0, 0)
    titles = [bars.nth(i).locator("title").text_content() or "" for i in range(20)]
    assert sum(int(t.rsplit(": ", 1)[1]) for t in titles) == scored
    shown = [float(s) for s in page.locator("#candidates tbody tr td:nth-child(7)")
             .all_inner_texts() if s]
    assert shown == sorted(shown, reverse=True) and shown
    top = lake.sql("select max(score) from candidates where run_id = ? and stage_id = ?",
                   [run_id, stage_id]).item(0, 0)
    assert shown[0] == pytest.approx(top, rel=1e-3)
    _shot(page, tmp_path, "stage-scores")
    lake.close()


def test_trends_and_the_sql_box_show_the_lakes_numbers(page: Any, base_url: str,
                                                       demo_root: str, tmp_path: Path) -> None:
    lake = xr.Lake(demo_root)
    page.goto(f"{base_url}/trends?label=fashion_search&since=30d")
    runs = lake.sql("select name, count(*) as times from stages "
                    "where label = 'fashion_search' group by name")
    expected = dict(runs.iter_rows())
    rows = page.locator("#trend-stages tbody tr")
    assert rows.count() == len(expected)
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert _int(cells[2]) == expected[cells[0]]
    assert page.locator("svg.chart").count() >= 2
    _shot(page, tmp_path, "trends")

    page.goto(f"{base_url}/sql")
    page.get_by_label("Query").fill("select label, count(*) as n from runs group by 1 "
                                    "order by 1")
    page.get_by_role("button", name="Run").click()
    cells = page.locator("#sql-result tbody tr").all_inner_texts()
    answer = lake.sql("select label, count(*) as n from runs group by 1 order by 1")
    assert [c.split("\t") for c in cells] == [[label, f"{n:,}"] for label, n in answer.rows()]
    assert "q=select" in page.url  # the query is in the URL
    _shot(page, tmp_path, "sql")
    lake.close()


def test_pages_are_keyboard_navigable_and_have_a_dark_mode(browser: Any, base_url: str,
                                                           tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(f"{base_url}/runs")
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert background == "rgb(13, 17, 23)"  # the dark palette
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        for _ in range(40):  # on to the first run's link, by keyboard alone
            page.keyboard.press("Tab")
            href = page.evaluate("document.activeElement.getAttribute('href') || ''")
            if href.startswith("/run?"):
                break
        else:
            pytest.fail("no run link reachable with Tab")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/run\?run="))
        assert page.locator("#funnel").is_visible()
        _shot(page, tmp_path, "run-dark")
    finally:
        context.close()


def _raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (a browser would normalise `..` away first)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _tree(root: str) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and mtime."""
    found = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            info = os.stat(path)
            found[path] = (info.st_size, info.st_mtime_ns)
    return found


def test_no_page_can_write_or_read_outside_the_lake(page: Any, base_url: str, demo_root: str,
                                                    tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text("token\nhunter2\n")
    xr.Lake(demo_root).sql("select 1")  # the lake's views exist before the snapshot
    before = _tree(demo_root)

    attempts = [
        f"select * from read_csv('{secret}')",
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/passwd')",
        f"select * from read_parquet('{demo_root}/../outside/*.parquet')",
        f"copy runs to '{outside}/runs.csv'",
        f"copy (select * from runs) to '{demo_root}/runs/stolen.parquet'",
        f"attach '{outside}/x.duckdb' as x",
        "install httpfs",
        "set enable_external_access = true",
        "create or replace view runs as select 1",
        f"select 1; copy runs to '{outside}/two.csv'",
    ]
    for sql in attempts:
        page.goto(f"{base_url}/sql")
        page.get_by_label("Query").fill(sql)
        page.get_by_role("button", name="Run").click()
        sync_api.expect(page.locator("#error"), sql).to_be_visible()  # waits for the answer
        assert "hunter2" not in page.content() and "root:x:0:0" not in page.content(), sql
    _shot(page, tmp_path, "sql-refused")

    for path in ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static//etc/passwd",
                 f"/static/{secret}", "/run?run=../../../etc/passwd",
                 "/stage?run=x&stage=../../etc/passwd"]:
        status, body = _raw_get(base_url, path)
        assert status in (400, 404), (path, status)
        assert b"root:x:0:0" not in body and b"hunter2" not in body, path

    # no endpoint writes: every route answers GET (and HEAD) only
    parts = urlsplit(base_url)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/runs", "/sql?q=select%201", "/run?run=x", "/static/style.css"):
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
            conn.request(method, path, body=b"q=copy runs to '/tmp/x.csv'")
            assert conn.getresponse().status == 405, (method, path)
            conn.close()

    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
    assert _tree(demo_root) == before  # nothing in the lake changed either
