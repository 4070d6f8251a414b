"""The Starlette application: one GET route per page, each page's state in its query string.

There is no route that writes: every route answers GET (and HEAD) only, and the lake is an
`xr.Lake` opened read-only (`query.readonly`: its SQL reads files under the root and
nothing else). One lake serves every request, behind a lock, since a DuckDB connection runs
one query at a time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from xray_lake._version import __version__
from xray_lake.display import duration, percent, scalar_text
from xray_lake.errors import QueryError, XrayLakeError
from xray_lake.query.journey import RunInfo, find_runs
from xray_lake.query.lake import Lake
from xray_lake.ui import charts, queries, sqlbox
from xray_lake.ui import trends as trend_data

# Memory the server may use to hold `runs` and `stages` (100,000 runs: ~500 MB of process
# RSS); a lake whose tables do not fit is read from its files (benchmarks/RESULTS.md).
CACHE_BYTES = 2**30
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# The page's own stylesheet and inline SVG only: no script runs, nothing loads from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class NotFound(XrayLakeError):
    """The page names a run, stage or candidate the lake does not hold."""


def cell(value: Any) -> str:
    """One value as table text: short floats, UTC times to the second, '' for null; every
    int with thousands separators, containers as JSON."""
    text = scalar_text(value)
    if text is not None:
        return text
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def ms(value: float | None) -> str:
    """A duration for people (display.duration): 0.07 ms, 8.76 ms, 1.24 s, 3 min 05 s."""
    return "" if value is None else duration(value)


def pretty_json(text: str | None) -> str:
    """Stored JSON indented for reading (as stored when it does not parse)."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return text


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("xray_lake.ui", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(cell=cell, ms=ms, pct=percent, pretty_json=pretty_json)
    env.globals.update(version=__version__, saved_views=queries.SAVED_VIEWS, qs=urlencode,
                       charts=charts)
    return env


Handler = Callable[[Request], tuple[str, dict[str, Any]]]


class Pages:
    """The lake, the templates, and one handler per page."""

    def __init__(self, root: str) -> None:
        self.root = root
        # Read-only by default; a long-lived server copies `runs` and `stages` into memory on
        # their first read (`query.cache`), which `warm()` makes happen at start-up.
        self.lake = Lake(root, cache_after=1, cache_bytes=CACHE_BYTES)
        self.lock = threading.Lock()
        self.env = _environment()

    def warm(self) -> None:
        """Read `runs` and `stages` once, so their in-memory copies are made before the first
        page is asked for rather than by it (errors are left for the pages to report)."""
        with contextlib.suppress(Exception), self.lock:
            self.lake.sql("select count(*) from runs")
            self.lake.sql("select count(*) from stages")

    def render(self, request: Request, handler: Handler) -> Response:
        """Run `handler` under the lake's lock and render its template; errors become pages
        (400 for a bad filter or query, 404 for what the lake does not hold)."""
        started = time.perf_counter()
        status = 200
        try:
            with self.lock:
                template, context = handler(request)
        except NotFound as exc:
            status, template, context = 404, "error.html", {"title": "Not found",
                                                             "message": str(exc)}
        except (QueryError, XrayLakeError) as exc:
            status, template, context = 400, "error.html", {"title": "Cannot show this",
                                                             "message": str(exc)}
        except Exception as exc:  # a bug or an untranslated engine error: say it, in the page
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            status, template, context = 500, "error.html", {
                "title": "Internal error", "message": f"{type(exc).__name__}: {first}"}
        context.update(request=request, root=self.root,
                       query_ms=(time.perf_counter() - started) * 1000)
        body = self.env.get_template(template).render(context)
        elapsed = (time.perf_counter() - started) * 1000
        return HTMLResponse(body, status_code=status, headers={
            **SECURITY_HEADERS, "Server-Timing": f"app;dur={elapsed:.1f}"})

    def _found(self, run_id: str) -> list[RunInfo]:
        if not run_id:
            raise QueryError("no run given: add ?run=RUN_ID (the runs page links each run)")
        found = find_runs(self.lake, run_id)
        if not found:
            raise NotFound(f"no run {run_id!r} in the lake")
        return found

    # --- pages ---------------------------------------------------------------------------

    def runs(self, request: Request) -> tuple[str, dict[str, Any]]:
        params = request.query_params
        state = queries.RunsFilter.from_params(params)
        context: dict[str, Any] = {"state": state, "labels": queries.labels(self.lake),
                                   "statuses": queries.STATUSES, "sorts": queries.RUN_SORTS,
                                   "view": params.get("view", ""), "title": "Runs"}
        context["page"] = queries.runs_page(self.lake, state)
        return "runs.html", context

    def run(self, request: Request) -> tuple[str, dict[str, Any]]:
        run_id = request.query_params.get("run", "")
        view = queries.run_view(self.lake, run_id, self._found(run_id))
        widest = max((s["n_in"] or s["n_out"] or 0 for s in view.stages), default=0)
        return "run.html", {"run": view, "widest": widest, "title": f"Run {run_id}"}

    def stage(self, request: Request) -> tuple[str, dict[str, Any]]:
        params = request.query_params
        run_id, stage_id = params.get("run", ""), params.get("stage", "")
        found = self._found(run_id)
        row = queries.stage_row(self.lake, run_id, stage_id, found)
        if row is None:
            raise NotFound(f"run {run_id!r} has no stage {stage_id!r}")
        state = queries.CandidatesFilter.from_params(params)
        page, hist = queries.stage_candidates(self.lake, run_id, stage_id, found, state)
        reasons = sorted((row["reason_counts"] or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        return "stage.html", {"run_id": run_id, "info": found[0], "stage": row,
                              "state": state, "page": page, "hist": hist,
                              "reasons": reasons, "shows": queries.CANDIDATE_SHOWS,
                              "sorts": queries.CANDIDATE_SORTS,
                              "title": f"Stage {row['name']} of run {run_id}"}

    def candidate(self, request: Request) -> tuple[str, dict[str, Any]]:
        params = request.query_params
        run_id, candidate_id = params.get("run", ""), params.get("candidate", "")
        if not candidate_id:
            raise QueryError("no candidate given: add &candidate=CANDIDATE_ID")
        found = self._found(run_id)
        path = queries.candidate_journey(self.lake, run_id, candidate_id, found)
        stage_ids = queries.stage_ids(self.lake, run_id, found)
        return "candidate.html", {"run_id": run_id, "candidate_id": candidate_id,
                                  "journey": path, "steps": path.steps.to_dicts(),
                                  "stage_ids": stage_ids,
                                  "title": f"Candidate {candidate_id} in run {run_id}"}

    def trends(self, request: Request) -> tuple[str, dict[str, Any]]:
        params = request.query_params
        labels = queries.labels(self.lake)
        label = params.get("label") or (labels[0] if labels else "")
        since = params.get("since", "30d").strip()
        until = params.get("until", "").strip()
        context: dict[str, Any] = {"labels": labels, "label": label, "since": since,
                                   "until": until, "title": f"Trends of {label}"}
        if label:
            found = trend_data.trends(self.lake, label, since, until)
            context.update(trends=found, **_trend_series(found))
        return "trends.html", context

    def sql(self, request: Request) -> tuple[str, dict[str, Any]]:
        text = request.query_params.get("q", "")
        context: dict[str, Any] = {"sql": text, "title": "SQL",
                                   "limit": sqlbox.SQL_ROW_LIMIT}
        if text.strip():
            try:
                context["result"] = sqlbox.run_sql(self.lake, text)
            except QueryError as exc:
                context["error"] = str(exc)
        return "sql.html", context


def _trend_series(found: trend_data.Trends) -> dict[str, Any]:
    """Per stage, one value per day (None where the stage did not run that day)."""
    index = {day: i for i, day in enumerate(found.days)}
    fail: dict[str, list[float | None]] = {}
    p90: dict[str, list[float | None]] = {}
    for row in found.daily:
        i = index[str(row["date"])]
        if row["fail_ratio"] is not None:
            fail.setdefault(row["name"], [None] * len(found.days))[i] = row["fail_ratio"]
        p90.setdefault(row["name"], [None] * len(found.days))[i] = row["p90_ms"]
    by_day: dict[str, list[dict[str, Any]]] = {}
    for row in found.reasons:
        by_day.setdefault(str(row["date"]), []).append(row)
    return {"fail_series": fail, "p90_series": p90, "reasons_by_day": by_day,
            "stage_p90": [(row["name"], row["p90_ms"]) for row in found.stages]}


def _closing(pages: Pages) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the lake's tables are warmed in the background when the server
    starts, and its connection closes when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=pages.warm, name="xray-lake-ui-warm", daemon=True).start()
        try:
            yield
        finally:
            with pages.lock:
                pages.lake.close()

    return lifespan


def create_app(root: str, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The web view of the lake at `root`.

    `allowed_hosts`: the Host headers answered (others get 400), so a web page elsewhere
    cannot reach a loopback server through a DNS name it controls; None answers any host."""
    pages = Pages(root)

    def route(path: str, handler: Handler) -> Route:
        def endpoint(request: Request) -> Response:
            return pages.render(request, handler)

        return Route(path, endpoint, methods=["GET"], name=handler.__name__)

    def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=302)

    middleware = ([Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
                  if allowed_hosts is not None else [])
    app = Starlette(routes=[
        Route("/", home, methods=["GET"]),
        route("/runs", pages.runs),
        route("/run", pages.run),
        route("/stage", pages.stage),
        route("/candidate", pages.candidate),
        route("/trends", pages.trends),
        route("/sql", pages.sql),
        Mount("/static", StaticFiles(packages=[("xray_lake.ui", "static")]), name="static"),
    ], middleware=middleware, lifespan=_closing(pages))
    app.state.pages = pages
    return app

