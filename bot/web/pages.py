"""The timeline pages people read after an incident, and their exports.

::

    GET  /incidents                       list: ?state=open|resolved|closed&q=text&page=N
    GET  /incidents/{id}                  the incident's timeline, approvals, chain state
    GET  /incidents/{id}/timeline.md      the same, as Markdown for the postmortem
    GET  /incidents/{id}/timeline.json    the same, as JSON (payloads and hashes)
    GET  /login, POST /login, POST /logout   browser sessions (bot.web.auth)
    GET  /static/...                      irbot.css, localtime.js

Every page needs ``IRBOT_WEB_TOKEN`` (Bearer or session cookie); without one configured
they answer 503. Store calls block, so they (and the rendering of a long timeline) run
in a worker thread, never on the event loop that acks Slack. Pages carry a strict
Content-Security-Policy (no inline script or style) and are never cached.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.core import report as reports
from bot.core.errors import NotFoundError
from bot.store import TimelineStore
from bot.store.errors import StoreError
from bot.store.records import INCIDENT_STATUSES
from bot.web import render
from bot.web.auth import COOKIE, SESSION_HOURS, SESSION_SECONDS, Verdict, WebAuth, safe_next
from bot.web.settings import ServerSettings
from bot.web.throttle import FailureThrottle

log = structlog.get_logger("irbot.web.pages")

PAGE_SIZE = 50
Q_MAX = 200
PAGE_MAX = 1_000_000
FORM_MAX_BYTES = 8192
GZIP_MIN_BYTES = 16 * 1024
GZIP_LEVEL = 4
"""~30 ms for 3.5 MB of timeline HTML here, 18x smaller (level 6: 40 ms, 19x). No page
holds a secret (no CSRF token; the session is a cookie), so compressing pages that also
echo a search text cannot leak one (BREACH)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
DISABLED_MESSAGE = "set IRBOT_WEB_TOKEN to enable the timeline pages"

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def page_routes(store: TimelineStore, server: ServerSettings) -> list[BaseRoute]:
    """The routes above, reading ``store`` (the app's) with the server's settings."""
    return Pages(store, WebAuth(server.web_token), server.slack_workspace_url).routes()


@dataclass(frozen=True)
class Pages:
    store: TimelineStore
    auth: WebAuth
    slack_base_url: str
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    """Wrong tokens per client (bot.web.throttle)."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/incidents", self._guard(self.incidents), methods=["GET"]),
            Route("/incidents/{incident_id}", self._guard(self.incident), methods=["GET"]),
            Route(
                "/incidents/{incident_id}/timeline.md",
                self._guard(self.markdown),
                methods=["GET"],
            ),
            Route(
                "/incidents/{incident_id}/timeline.json",
                self._guard(self.json),
                methods=["GET"],
            ),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Mount("/static", app=StaticFiles(packages=[("bot.web", "static")])),
        ]

    # ------------------------------------------------------------------ pages

    async def incidents(self, request: Request) -> Response:
        params = request.query_params
        state = params.get("state") or None
        if state is not None and state not in INCIDENT_STATUSES:
            return _error(request, 400, f"state must be one of {', '.join(INCIDENT_STATUSES)}")
        q = params.get("q", "").strip() or None
        if q is not None and len(q) > Q_MAX:
            return _error(request, 400, f"the search text is at most {Q_MAX} characters")
        raw_page = params.get("page", "1")
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= PAGE_MAX:
            return _error(request, 400, f"page must be a whole number from 1 to {PAGE_MAX}")
        page = int(raw_page)

        def build() -> str:
            rows = self.store.list_incidents(state, q, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
            return render.incident_list(
                rows[:PAGE_SIZE],
                state=state,
                q=q,
                page=page,
                has_next=len(rows) > PAGE_SIZE,
                q_max=Q_MAX,
                base=_base(request),
            )

        return await self._answer(request, build, "text/html; charset=utf-8")

    async def incident(self, request: Request) -> Response:
        def build() -> str:
            report = self._report(request)
            return render.incident_page(report, base=_base(request))

        return await self._answer(request, build, "text/html; charset=utf-8")

    async def markdown(self, request: Request) -> Response:
        def build() -> str:
            return reports.to_markdown(self._report(request))

        response = await self._answer(request, build, "text/markdown; charset=utf-8")
        if response.status_code == 200:
            name = request.path_params["incident_id"]
            response.headers["Content-Disposition"] = f'inline; filename="{name}-timeline.md"'
        return response

    async def json(self, request: Request) -> Response:
        def build() -> str:
            data = reports.to_dict(self._report(request))
            return json.dumps(data, ensure_ascii=False)  # no indent: the C encoder (5x faster)

        return await self._answer(request, build, "application/json")

    def _report(self, request: Request) -> reports.Report:
        incident_id = str(request.path_params["incident_id"])
        return self.store.report(incident_id, slack_base_url=self.slack_base_url)

    async def _answer(self, request: Request, build: Callable[[], str], media: str) -> Response:
        """Run ``build`` (store reads + rendering, and gzip for a client that takes it:
        a 5,000-event page is ~3.5 MB of HTML, ~0.2 MB gzipped) in a thread; map store
        errors to pages: unknown incident 404, database trouble 503."""
        gzipped = "gzip" in request.headers.get("accept-encoding", "").lower()

        def encoded() -> tuple[bytes, bool]:
            body = build().encode()
            if gzipped and len(body) >= GZIP_MIN_BYTES:
                return gzip.compress(body, compresslevel=GZIP_LEVEL), True
            return body, False

        try:
            body, compressed = await run_in_threadpool(encoded)
        except NotFoundError as exc:
            return _error(request, 404, exc.message, signed_in=True)
        except StoreError as exc:
            log.error("web.store_failed", path=request.url.path, error=exc.message)
            return _error(
                request, 503, "the timeline database did not answer; try again", signed_in=True
            )
        response = Response(body, media_type=media)
        response.headers["Vary"] = "Accept-Encoding"
        if compressed:
            response.headers["Content-Encoding"] = "gzip"
        return _secure(response)

    # ------------------------------------------------------------------ sessions

    async def login_form(self, request: Request) -> Response:
        if not self.auth.enabled:
            return _error(request, 503, DISABLED_MESSAGE)
        target = safe_next(request.query_params.get("next"), _base(request) + "/incidents")
        return _secure(
            HTMLResponse(
                render.login_page(
                    next_path=target, base=_base(request), session_hours=SESSION_HOURS
                )
            )
        )

    async def login(self, request: Request) -> Response:
        if not self.auth.enabled:
            return _error(request, 503, DISABLED_MESSAGE)
        form = await _form(request)
        if form is None:
            return _error(request, 400, "send the login form (application/x-www-form-urlencoded)")
        base = _base(request)
        target = safe_next(form.get("next"), base + "/incidents")
        client = _client(request)
        if (wait := self.throttle.retry_after(client)) is not None:
            return self._throttled(request, wait)
        if not self.auth.token_matches(form.get("token", "")):
            self.throttle.failed(client)
            log.warning("web.login_refused", client=client)
            page = render.login_page(
                message="That is not the access token. Try again.",
                next_path=target,
                base=base,
                session_hours=SESSION_HOURS,
            )
            return _secure(HTMLResponse(page, status_code=401))
        self.throttle.succeeded(client)
        log.info("web.login", client=client)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            self.auth.session_cookie(),
            max_age=SESSION_SECONDS,
            path=base or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return _secure(response)

    async def logout(self, request: Request) -> Response:
        base = _base(request)
        response = RedirectResponse(base + "/login", status_code=303)
        _forget(response, request)
        return _secure(response)

    def _throttled(self, request: Request, wait: int) -> Response:
        client = _client(request)
        if self.throttle.first_refusal(client):
            log.warning("web.token_attempts_throttled", client=client, retry_after=wait)
        response = _error(
            request, 429, f"Too many wrong access tokens from your address: try again in {wait} s."
        )
        response.headers["Retry-After"] = str(wait)
        return response

    def _guard(self, page: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            authorization = request.headers.get("authorization")
            client = _client(request)
            if authorization and (wait := self.throttle.retry_after(client)) is not None:
                return self._throttled(request, wait)
            verdict = self.auth.check(authorization, request.cookies.get(COOKIE))
            if authorization and verdict is Verdict.WRONG:
                self.throttle.failed(client)
            if verdict is Verdict.OK:
                return await page(request)
            return _refuse(request, verdict)

        return guarded


# --------------------------------------------------------------------------- answers

_REFUSALS = {
    Verdict.MISSING: "Log in with the access token to see the timeline pages.",
    Verdict.WRONG: "That is not the access token.",
    Verdict.EXPIRED: "Your session expired (or the token changed). Log in again.",
}


def _refuse(request: Request, verdict: Verdict) -> Response:
    """503 when the pages are off; 401 otherwise: the login page for a browser, a line
    of text with ``WWW-Authenticate`` for anything else."""
    if verdict is Verdict.DISABLED:
        return _error(request, 503, DISABLED_MESSAGE)
    message = _REFUSALS[verdict]
    response: Response
    if _wants_html(request):
        query = f"?{request.url.query}" if request.url.query else ""
        target = safe_next(request.url.path + query)
        page = render.login_page(
            message=message, next_path=target, base=_base(request), session_hours=SESSION_HOURS
        )
        response = HTMLResponse(page, status_code=401)
    else:
        response = PlainTextResponse(message + "\n", status_code=401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="irbot"'
    if verdict is Verdict.EXPIRED:
        _forget(response, request)
    return _secure(response)


def _error(request: Request, status: int, message: str, *, signed_in: bool = False) -> Response:
    response: Response
    if _wants_html(request):
        page = render.error_page(status, message, base=_base(request), signed_in=signed_in)
        response = HTMLResponse(page, status_code=status)
    else:
        response = PlainTextResponse(message + "\n", status_code=status)
    return _secure(response)


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _forget(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=_base(request) or "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _base(request: Request) -> str:
    """The prefix the app is mounted under (uvicorn ``--root-path``), for links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _form(request: Request) -> dict[str, str] | None:
    """A small url-encoded form (the login form); None if it is anything else."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}
