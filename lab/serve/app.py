"""The web view as a Starlette app: read-only pages, JSON and server-sent events over the results database."""

from __future__ import annotations

import hmac
import io
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import asyncio
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lab.db.live import campaign_state, decode_cursor, encode_cursor, live_state, new_records, runs_of
from lab.db.queries import campaign_ref, campaign_rows, campaign_summary
from lab.db.report_load import load_report
from lab.db.session import Engine
from lab.errors import ConfigError
from lab.report.build import write_report
from lab.report.compare import compare_view, render_campaigns_json, render_compare_html
from lab.serve.pages import render_error, render_index, render_live

# Our own pages: scripts and styles from this server only, no inline anything, no frames, no other origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# Reports and comparisons are the self-contained files `lab report`/`lab compare` write: inline styles (the
# matrix's colours), data: images and downloads, and no script at all.
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; "
              "frame-ancestors 'none'")
TOKEN_COOKIE = "lab_token"
POLL_SECONDS = 0.5
RETRY_MS = 1000
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]


class Guard:
    """ASGI middleware: the token (when set) on every request, and security headers on every response."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request without the token; add CSP and friends to whatever the app answers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token is not None:
            request = Request(scope)
            via_query = request.query_params.get("token")
            supplied = (_bearer(request.headers.get("authorization")) or via_query
                        or request.cookies.get(TOKEN_COOKIE) or "")
            if not hmac.compare_digest(supplied.encode(), self.token):
                response: Response = HTMLResponse(render_error(401, "this server needs its token",
                                                               "open it with ?token=TOKEN or send "
                                                               "'Authorization: Bearer TOKEN'"), status_code=401)
                await self._with_headers(response)(scope, receive, send)
                return
            if via_query:  # keep the token out of the address bar, history and logs: a cookie from now on
                query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urlencode(query) if query else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(TOKEN_COOKIE, via_query, httponly=True, samesite="strict", path="/")
                await self._with_headers(response)(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            """Add the security headers a response did not set itself."""
            if message["type"] == "http.response.start":
                _secure(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _with_headers(response: Response) -> Response:
        """A response of the guard itself, with the same headers as the app's."""
        _secure(response.headers)
        return response


def _secure(headers: MutableHeaders) -> None:
    """CSP (the strict one unless the response chose the report's), no sniffing, no referrer, no caching."""
    headers.setdefault("content-security-policy", CSP)
    headers.setdefault("x-content-type-options", "nosniff")
    headers.setdefault("referrer-policy", "no-referrer")
    headers.setdefault("cache-control", "no-store")


def _bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header."""
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


class ReportCache:
    """The HTML of finished campaigns' reports, rendered once per (campaign, status, end); a few kept."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine: Engine, key: tuple, name: str) -> str:
        """The report of campaign `name`, from the cache when `key` is unchanged."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        out = io.StringIO()
        write_report(engine, name, "html", out)
        with self._lock:
            self._items[key] = out.getvalue()
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return out.getvalue()


def lookup(engine: Engine, ref: str) -> tuple[int, str, str, Any]:
    """(id, name, status, finished_at) of campaign `ref` (name, else numeric id); 404 when there is none."""
    row = campaign_ref(engine, ref)
    if row is None:
        raise HTTPException(404, f"no campaign {ref!r} in this database")
    return row


def create_app(engine: Engine, token: str | None = None, allowed_hosts: list[str] | None = None,
               poll_seconds: float = POLL_SECONDS) -> Starlette:
    """The app over a read-only `engine`; `token` guards every request; `allowed_hosts` for the Host header."""
    reports = ReportCache()

    async def index(request: Request) -> Response:
        """`/`: the campaigns, newest first."""
        rows = await run_in_threadpool(campaign_rows, engine)
        return HTMLResponse(render_index(rows))

    async def campaign_page(request: Request) -> Response:
        """`/campaigns/NAME`: live while it runs, the full report once it has ended."""
        cid, name, status, finished = await run_in_threadpool(lookup, engine, request.path_params["name"])
        if status == "running":
            state = await run_in_threadpool(live_state, engine, name)
            return HTMLResponse(render_live(state))
        html = await run_in_threadpool(reports.get, engine, (cid, status, finished), name)
        return HTMLResponse(html, headers={"content-security-policy": REPORT_CSP})

    async def events(request: Request) -> Response:
        """`/campaigns/NAME/events`: every record as stored, in batches; resumable with `Last-Event-ID`."""
        cid, name, _, _ = await run_in_threadpool(lookup, engine, request.path_params["name"])
        runs = await run_in_threadpool(runs_of, engine, cid)
        cursor = decode_cursor(request.headers.get("last-event-id") or request.query_params.get("after"), len(runs))
        return EventSourceResponse(_stream(engine, cid, runs, cursor, poll_seconds), ping=15,
                                   headers={"cache-control": "no-store"})

    async def compare(request: Request) -> Response:
        """`/compare?c=A&c=B`: campaigns side by side, as `lab compare --format html`."""
        refs = request.query_params.getlist("c")
        if not refs:
            raise ConfigError("no campaign to compare", "/compare", "name them as /compare?c=A&c=B")
        for ref in refs:
            await run_in_threadpool(lookup, engine, ref)
        models = await run_in_threadpool(lambda: [load_report(engine, ref) for ref in refs])
        return HTMLResponse(render_compare_html(compare_view(models)),
                            headers={"content-security-policy": REPORT_CSP})

    async def api_campaigns(request: Request) -> Response:
        """`/api/campaigns`: the JSON of `lab campaigns --json`."""
        rows = await run_in_threadpool(campaign_rows, engine)
        return Response(render_campaigns_json(rows), media_type="application/json")

    async def api_campaign(request: Request) -> Response:
        """`/api/campaigns/NAME`: the JSON of `lab run --json` (status and every run's verdict)."""
        _, name, _, _ = await run_in_threadpool(lookup, engine, request.path_params["name"])
        summary = await run_in_threadpool(campaign_summary, engine, name)
        return Response(json.dumps(summary, indent=2, default=str) + "\n", media_type="application/json")

    async def not_found(request: Request, exc: HTTPException) -> Response:
        """404 and the other HTTP errors as a one-line page (JSON under /api/)."""
        return _error(request, exc.status_code, str(exc.detail) if exc.status_code != 404 or exc.detail != "Not Found"
                      else f"no page {request.url.path}", "see the campaigns at /")

    async def bad_input(request: Request, exc: ConfigError) -> Response:
        """Bad input (a malformed event id, no campaign to compare) is a 400 with lab's one-line error."""
        return _error(request, 400, exc.what + (f", {exc.where}" if exc.where else ""), exc.hint or "")

    static = files("lab.serve") / "static"
    routes = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/campaigns/{name:path}/events", events, methods=["GET"]),
        Route("/campaigns/{name:path}", campaign_page, methods=["GET", "HEAD"]),
        Route("/compare", compare, methods=["GET", "HEAD"]),
        Route("/api/campaigns", api_campaigns, methods=["GET", "HEAD"]),
        Route("/api/campaigns/{name:path}", api_campaign, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    middleware = [Middleware(Guard, token=token)]
    if allowed_hosts:  # a Host header naming another site (DNS rebinding) gets nothing
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: not_found, ConfigError: bad_input})


def _error(request: Request, status: int, what: str, hint: str) -> Response:
    """An error as HTML, or as JSON `{"error": ...}` under /api/."""
    if request.url.path.startswith("/api/"):
        return Response(json.dumps({"error": what, "hint": hint}) + "\n", status_code=status,
                        media_type="application/json")
    return HTMLResponse(render_error(status, what, hint), status_code=status)


async def _stream(engine: Engine, campaign_id: int, runs: list, cursor: list[int],
                  poll_seconds: float) -> AsyncIterator[dict[str, Any]]:
    """`state` when the campaign or a run changes, `records` batches with the cursor as id, `end` once it has ended.

    The state is read before the records: once it says the campaign ended, the records read after it are all
    there will be, so `end` never comes before a record.
    """
    last_state = None
    first = True
    while True:
        state = await run_in_threadpool(campaign_state, engine, campaign_id)
        if state != last_state:
            event = {"event": "state", "data": json.dumps(state)}
            if first:  # how soon a dropped client comes back
                event["retry"] = RETRY_MS
            first = False
            yield event
            last_state = state
        while True:
            records, cursor = await run_in_threadpool(new_records, engine, runs, cursor)
            if not records:
                break
            yield {"event": "records", "id": encode_cursor(cursor), "data": json.dumps(records)}
        if state["status"] != "running":
            yield {"event": "end", "data": json.dumps({"status": state["status"]})}
            return
        await asyncio.sleep(poll_seconds)
