"""The timeline pages through the real server: `irbot serve`'s app under uvicorn, real
HTTP, incidents made by running a playbook through the engine (tests/pages_support.py
describes them); plus `irbot timeline --format html`, rendered offline.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from markupsafe import escape

from bot.core import report as reports
from bot.core.errors import ConfigError
from bot.core.timeline import NewEvent, event_id
from bot.settings import load_settings
from bot.store import TimelineStore
from bot.store.database import normalize_url
from bot.store.models import EventRow
from bot.web import render
from bot.web.app import create_app
from bot.web.auth import COOKIE, SESSION_SECONDS, WebAuth
from bot.web.pages import PAGE_SIZE
from bot.web.settings import load_server_settings
from tests.engine_support import IRBOT, Harness, drop_append_only_triggers
from tests.fake_slack import FakeSlack, fake_slack_fixture  # noqa: F401
from tests.pages_support import (
    BREAKGLASS_REASON,
    BULK,
    PAGERDUTY_URL,
    THREAD_TS,
    WEB_TOKEN,
    WORKSPACE,
    XSS_INPUT,
    XSS_NOTE,
    XSS_REASON,
    Site,
    server_env,
    serving,
    site_and_server,
)
from tests.test_slack_app_support import teach

BEARER = {"Authorization": f"Bearer {WEB_TOKEN}"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
ROW = re.compile(r'<tr id="ev-\d+" data-seq="(\d+)" data-kind="([a-z_.]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with site_and_server(tmp_path_factory.mktemp("pages")) as built:
        yield built


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        yield client


def report_of(site: Site, incident_id: str) -> reports.Report:
    store = site.store()
    try:
        return store.report(incident_id, slack_base_url=WORKSPACE)
    finally:
        store.close()


def listed(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return re.findall(r'<tr data-incident="(INC-\d+)"', page.text)


# --------------------------------------------------------------------------- list


def test_list_is_newest_first_and_paginated_by_50(site: Site, http: httpx.Client) -> None:
    """63 incidents: page 1 has the 50 newest, page 2 the other 13 with a link back,
    page 3 is empty (not an error); each row links to its incident."""
    total = BULK + 3
    first = http.get("/incidents", headers=BEARER)
    ids = listed(first)
    assert len(ids) == PAGE_SIZE
    assert ids == [f"INC-{n}" for n in range(total, total - PAGE_SIZE, -1)]
    assert 'href="/incidents?page=2"' in first.text
    assert 'rel="prev"' not in first.text
    assert 'href="/incidents/INC-63"' in first.text
    assert first.headers["content-encoding"] == "gzip"  # httpx asks for it, as browsers do
    assert first.headers["vary"] == "Accept-Encoding"
    identity = http.get("/incidents", headers=BEARER | {"Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert identity.text == first.text
    second = http.get("/incidents", params={"page": 2}, headers=BEARER)
    assert listed(second) == [f"INC-{n}" for n in range(total - PAGE_SIZE, 0, -1)]
    assert 'rel="prev" href="/incidents"' in second.text
    assert 'rel="next"' not in second.text
    third = http.get("/incidents", params={"page": 3}, headers=BEARER)
    assert listed(third) == []
    assert "No incidents on page 3." in third.text


def test_list_filters_by_state_and_text(site: Site, http: httpx.Client) -> None:
    """?state= keeps one state (and shows it selected), ?q= matches the title, the two
    combine, and pagination links keep the filters."""
    resolved = listed(http.get("/incidents", params={"state": "resolved"}, headers=BEARER))
    assert sorted(resolved) == sorted(site.resolved)
    closed = http.get("/incidents", params={"state": "closed"}, headers=BEARER)
    assert sorted(listed(closed)) == sorted(site.closed)
    assert '<option value="closed" selected>' in closed.text
    assert set(re.findall(r'data-state="(\w+)"', closed.text)) == {"closed"}
    needles = listed(http.get("/incidents", params={"q": "NEEDLE"}, headers=BEARER))
    assert sorted(needles) == sorted(site.needles)
    both = http.get("/incidents", params={"q": "needle", "state": "resolved"}, headers=BEARER)
    assert listed(both) == [i for i in site.needles if i in site.resolved] != []
    opened = http.get("/incidents", params={"state": "open", "q": "drill"}, headers=BEARER)
    assert len(listed(opened)) == BULK - 11
    assert 'href="/incidents?state=open&amp;q=drill&amp;page=2"' not in opened.text
    nothing = http.get("/incidents", params={"q": "no such thing"}, headers=BEARER)
    assert listed(nothing) == []
    assert "No incidents match these filters." in nothing.text
    by_id = listed(http.get("/incidents", params={"q": site.breakglass}, headers=BEARER))
    assert site.breakglass in by_id


def test_list_pagination_keeps_filters(site: Site, http: httpx.Client) -> None:
    """With a filter matching more than a page, the next link carries it."""
    page = http.get("/incidents", params={"q": "drill"}, headers=BEARER)
    assert len(listed(page)) == PAGE_SIZE
    assert 'href="/incidents?q=drill&amp;page=2"' in page.text
    rest = listed(http.get("/incidents", params={"q": "drill", "page": 2}, headers=BEARER))
    assert len(rest) == BULK - PAGE_SIZE


@pytest.mark.parametrize(
    "params",
    [{"state": "bogus"}, {"page": "0"}, {"page": "two"}, {"page": "-1"}, {"q": "x" * 201}],
)
def test_bad_filters_are_400(http: httpx.Client, params: dict[str, str]) -> None:
    """A state outside open/resolved/closed, a page that is not a positive number, an
    over-long search: 400 with the reason, as a page for browsers."""
    plain = http.get("/incidents", params=params, headers=BEARER)
    assert plain.status_code == 400
    assert plain.headers["content-type"].startswith("text/plain")
    page = http.get("/incidents", params=params, headers=BEARER | BROWSER)
    assert page.status_code == 400
    assert "<h1>400 Bad Request</h1>" in page.text


# --------------------------------------------------------------------------- detail


def test_incident_page_shows_every_event_in_order(site: Site, http: httpx.Client) -> None:
    """One row per stored event of the incident, in chain order, each with its UTC time
    in a <time datetime> element (localtime.js adds the viewer's local time), actor,
    step, result and duration."""
    page = http.get(f"/incidents/{site.breakglass}", headers=BEARER)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    store = site.store()
    try:
        events = store.events(incident_id=site.breakglass)
    finally:
        store.close()
    rows = [(int(seq), kind) for seq, kind in ROW.findall(page.text)]
    assert rows == [(e.seq, e.kind) for e in events]
    assert [seq for seq, _ in rows] == sorted(seq for seq, _ in rows)
    assert rows[0][1] == "incident.opened"
    assert rows[-1][1] == "note"
    times = re.findall(r'<time datetime="([0-9T:.Z-]+)">([0-9: -]+) UTC</time>', page.text)
    first = events[0].at.astimezone(UTC)
    assert (
        first.strftime("%Y-%m-%dT%H:%M:%S.") + f"{first.microsecond // 1000:03d}Z",
        first.strftime("%Y-%m-%d %H:%M:%S"),
    ) in times
    assert '<script src="/static/localtime.js" defer></script>' in page.text
    hello = re.search(r'data-kind="step.succeeded".*?</tr>', page.text, re.S)
    assert hello is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", hello.group(), re.S)
    assert cells[2:6] == ["step.succeeded", "hello", "irbot", "ok"]
    assert re.fullmatch(r"[\d.]+ (ms|s)", cells[6])
    assert "<h1><span" in page.text
    assert f"{site.breakglass}</span> gated: target=db-7" in page.text


def test_incident_page_approvals_refusals_breakglass_and_links(
    site: Site, http: httpx.Client
) -> None:
    """The approvals table has who, when, the full digest and the outcome of every vote,
    refusals with their reason; break-glass is flagged at the top and on the run; the
    Slack thread and the PagerDuty incident are linked; the chain is verified."""
    rep = report_of(site, site.breakglass)
    text = http.get(f"/incidents/{site.breakglass}", headers=BEARER).text
    rows = re.findall(
        r'<tr data-approval="\d+" data-user="(\w+)" data-outcome="([\w-]+)".*?</tr>', text, re.S
    )
    assert rows == [(a.user, a.outcome) for a in rep.approvals]
    assert ("U01", "refused") in rows
    assert ("U09", "break-glass") in rows
    approvals = text[text.index('id="approvals"') : text.index('id="timeline"')]
    assert "U01 requested this run and cannot approve it" in approvals
    assert escape(BREAKGLASS_REASON) in approvals
    for vote in rep.approvals:
        assert len(vote.digest) == 64
        assert f'<code class="digest">{vote.digest}</code>' in approvals
    assert '<div class="alert breakglass" role="alert" id="breakglass"' in text
    assert text.index('id="breakglass"') < text.index('id="runs"')
    assert 'class="badge breakglass">BREAK-GLASS<' in text
    slack = f"{WORKSPACE}/archives/C0INCIDENTS/p{THREAD_TS.replace('.', '')}"
    assert f'<a href="{slack}" rel="noreferrer noopener">open in Slack</a>' in text
    assert f'<a href="{PAGERDUTY_URL}" rel="noreferrer noopener">PagerDuty incident</a>' in text
    assert f'href="/incidents/{site.breakglass}/timeline.md"' in text
    assert f'href="/incidents/{site.breakglass}/timeline.json"' in text
    assert 'id="chain" data-chain="ok" class="chain-ok">verified (' in text
    assert 'id="chain-broken"' not in text

    ordinary = http.get(f"/incidents/{site.approved}", headers=BEARER).text
    assert 'id="breakglass"' not in ordinary
    assert "BREAK-GLASS" not in ordinary
    assert 'data-user="U01" data-outcome="counted"' in ordinary
    assert 'data-user="U03" data-outcome="granted"' in ordinary


def test_exports_are_the_report(site: Site, http: httpx.Client) -> None:
    """timeline.md and timeline.json are exactly report.to_markdown / report.to_dict of
    the store's report (same Slack permalink base)."""
    md = http.get(f"/incidents/{site.breakglass}/timeline.md", headers=BEARER)
    assert md.status_code == 200
    assert md.headers["content-type"] == "text/markdown; charset=utf-8"
    exported = http.get(f"/incidents/{site.breakglass}/timeline.json", headers=BEARER)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/json"
    rep = report_of(site, site.breakglass)
    assert md.text == reports.to_markdown(rep)
    assert exported.json() == reports.to_dict(rep)
    assert exported.json()["incident"]["pagerduty_url"] == PAGERDUTY_URL


def test_html_in_notes_titles_and_reasons_is_text(site: Site, http: httpx.Client) -> None:
    """A note with <script>, an input that is an <img onerror> tag (it is in the title
    and the run's inputs) and a rejection reason with <b> are escaped on the pages and
    in the Markdown; the pages carry a CSP that allows no inline script at all."""
    page = http.get(f"/incidents/{site.breakglass}", headers=BEARER)
    assert "<script>alert" not in page.text
    assert escape(XSS_NOTE) in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts == ['<script src="/static/localtime.js" defer>']
    assert " style=" not in page.text
    assert "<style" not in page.text
    md = http.get(f"/incidents/{site.breakglass}/timeline.md", headers=BEARER).text
    assert "<script>" not in md
    assert "&lt;script&gt;alert('irbot-xss')&lt;/script&gt;" in md

    rejected = http.get(f"/incidents/{site.rejected}", headers=BEARER).text
    assert XSS_INPUT not in rejected
    assert escape(XSS_INPUT) in rejected
    assert "<b>not now</b>" not in rejected
    assert escape(XSS_REASON) in rejected
    assert 'data-outcome="rejected"' in rejected
    listing = http.get("/incidents", params={"q": "onerror"}, headers=BEARER).text
    assert listed_ok(listing) == [site.rejected]
    assert XSS_INPUT not in listing


def listed_ok(text: str) -> list[str]:
    return re.findall(r'<tr data-incident="(INC-\d+)"', text)


def test_unknown_incident_is_404(http: httpx.Client) -> None:
    """A page for browsers, a line for others; the exports too."""
    page = http.get("/incidents/INC-999", headers=BEARER | BROWSER)
    assert page.status_code == 404
    assert "<h1>404 Not Found</h1>" in page.text
    assert "no incident &#39;INC-999&#39;" in page.text
    for path in ("/incidents/INC-999/timeline.md", "/incidents/INC-999/timeline.json"):
        missing = http.get(path, headers=BEARER)
        assert missing.status_code == 404
        assert missing.text == "no incident 'INC-999'\n"
    junk = http.get("/incidents/%3Cscript%3E", headers=BEARER | BROWSER)
    assert junk.status_code == 404
    assert "<script>" not in junk.text


def test_static_assets_are_served(http: httpx.Client) -> None:
    """The stylesheet and the local-time script (no login needed: they hold no data)."""
    script = http.get("/static/localtime.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "time[datetime]" in script.text
    style = http.get("/static/irbot.css")
    assert style.status_code == 200
    assert "@media (max-width: 720px)" in style.text


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "path",
    [
        "/incidents",
        "/incidents/INC-1",
        "/incidents/INC-1/timeline.md",
        "/incidents/INC-1/timeline.json",
    ],
)
def test_no_token_or_a_wrong_one_is_401(http: httpx.Client, path: str) -> None:
    """Without credentials, with a wrong Bearer, another scheme or a forged cookie: 401
    with WWW-Authenticate and nothing of the incident."""
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Basic {WEB_TOKEN}"},
        {"Cookie": f"{COOKIE}=v1.99999999999.deadbeef"},
        {"Cookie": f"{COOKIE}={WEB_TOKEN}"},
    ):
        http.cookies.clear()
        answer = http.get(path, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == 'Bearer realm="irbot"'
        assert answer.headers["content-type"].startswith("text/plain")
        assert "gated" not in answer.text


def test_browser_without_session_gets_the_login_page(http: httpx.Client) -> None:
    """A browser (Accept: text/html) gets 401 with the login form, which comes back to
    the page it asked for."""
    answer = http.get("/incidents/INC-1", params={"x": "1"}, headers=BROWSER)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "Log in with the access token" in answer.text
    assert '<form method="post" action="/login">' in answer.text
    assert '<input type="hidden" name="next" value="/incidents/INC-1?x=1">' in answer.text


def test_login_sets_a_signed_cookie_and_logout_clears_it(site: Site, http: httpx.Client) -> None:
    """POST /login with the token: 303 to `next` and an HttpOnly, SameSite=Strict cookie
    that holds an HMAC, not the token; it opens the pages; a wrong token is 401 with the
    form again; `next` cannot leave the site; POST /logout clears the cookie."""
    wrong = http.post("/login", data={"token": "not-the-token-at-all", "next": "/incidents"})
    assert wrong.status_code == 401
    assert "That is not the access token" in wrong.text
    assert "set-cookie" not in wrong.headers

    ok = http.post("/login", data={"token": WEB_TOKEN, "next": f"/incidents/{site.approved}"})
    assert ok.status_code == 303
    assert ok.headers["location"] == f"/incidents/{site.approved}"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=v1.")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert f"Max-Age={SESSION_SECONDS}" in cookie
    assert WEB_TOKEN not in cookie
    assert http.get(f"/incidents/{site.approved}").status_code == 200
    assert http.get("/incidents").status_code == 200

    out = http.post("/logout")
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert http.get("/incidents").status_code == 401

    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        redirected = http.post("/login", data={"token": WEB_TOKEN, "next": evil})
        assert redirected.headers["location"] == "/incidents"
    http.cookies.clear()


def test_expired_or_foreign_cookies_are_refused(http: httpx.Client) -> None:
    """A cookie past its expiry, or signed with another token (rotated), is 401 and is
    cleared; a fresh one made with the configured token works."""
    auth = WebAuth(load_server_settings({"IRBOT_WEB_TOKEN": WEB_TOKEN}).web_token)
    other = WebAuth(load_server_settings({"IRBOT_WEB_TOKEN": "another-token-0123456789"}).web_token)
    stale = auth.session_cookie(now=time.time() - SESSION_SECONDS - 5)
    for value in (stale, other.session_cookie()):
        http.cookies.clear()
        refused = http.get("/incidents", headers=BROWSER | {"Cookie": f"{COOKIE}={value}"})
        assert refused.status_code == 401
        assert "Your session expired" in refused.text
        assert f'{COOKIE}=""' in refused.headers["set-cookie"]
    http.cookies.clear()
    fresh = {"Cookie": f"{COOKIE}={auth.session_cookie()}"}
    assert http.get("/incidents", headers=fresh).status_code == 200
    http.cookies.clear()


def test_without_web_token_the_pages_are_closed(site: Site) -> None:
    """No IRBOT_WEB_TOKEN: every page and the login answer 503 saying what to set, even
    to a request with a Bearer token; health still answers."""
    env = {**site.env, "IRBOT_WEB_TOKEN": ""}
    with serving(env) as url, httpx.Client(base_url=url) as client:
        for path in ("/incidents", f"/incidents/{site.breakglass}", "/login"):
            answer = client.get(path, headers=BEARER)
            assert answer.status_code == 503
            assert answer.text == "set IRBOT_WEB_TOKEN to enable the timeline pages\n"
        login = client.post("/login", data={"token": WEB_TOKEN})
        assert login.status_code == 503
        page = client.get("/incidents", headers=BROWSER)
        assert page.status_code == 503
        assert "set IRBOT_WEB_TOKEN to enable the timeline pages" in page.text
        assert client.get("/healthz").status_code == 200


def test_web_settings_are_checked() -> None:
    """A short IRBOT_WEB_TOKEN and a workspace URL that is not http(s) are ConfigErrors
    naming the variable (and never the value); the workspace URL loses its slash."""
    with pytest.raises(ConfigError, match=r"IRBOT_WEB_TOKEN: .*at least 16 characters") as bad:
        load_server_settings({"IRBOT_WEB_TOKEN": "short-secret"})
    assert "short-secret" not in str(bad.value)
    with pytest.raises(ConfigError, match="IRBOT_SLACK_WORKSPACE_URL"):
        load_server_settings({"IRBOT_SLACK_WORKSPACE_URL": "acme.slack.com"})
    loaded = load_server_settings({"IRBOT_SLACK_WORKSPACE_URL": "https://acme.slack.com/"})
    assert loaded.slack_workspace_url == "https://acme.slack.com"
    assert load_server_settings({}).web_token is None
    assert load_server_settings({}).slack_workspace_url == "https://slack.com"


def test_pages_are_served_in_socket_mode_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack
) -> None:
    """The page routes are part of the app whether Slack comes over HTTP or Socket Mode."""
    h = Harness(tmp_path, None, monkeypatch)
    env = server_env(h, teach(fake_slack), SLACK_APP_TOKEN="xapp-1-A0-0000-pagestest")
    app = create_app(load_settings(env), load_server_settings(env), socket_mode=True)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/incidents", "/incidents/{incident_id}", "/login", "/logout", "/static"} <= paths
    assert "/slack/events" not in paths


# --------------------------------------------------------------------------- tampering


def test_a_tampered_event_shows_broken_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, fake_slack: FakeSlack
) -> None:
    """An event row edited by SQL: the page says "BROKEN at event N" at the top, marks
    that row, and the Markdown says so too; before the edit the chain is verified."""
    h = Harness(tmp_path, database_url, monkeypatch)
    store = TimelineStore(h.settings.store_url())
    store.migrate()
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    incident = store.open_incident(key="tamper", title="tamper drill", at=at)
    for n in range(5):
        store.append(
            NewEvent(
                id=event_id("tamper", n),
                incident_id=incident.id,
                kind="note",
                actor="user:U01",
                at=at,
                payload={"text": f"note {n}"},
            )
        )
    seqs = [e.seq for e in store.events(incident_id=incident.id)]
    store.close()
    env = server_env(h, teach(fake_slack))
    with serving(env) as url, httpx.Client(base_url=url, headers=BEARER) as client:
        clean = client.get(f"/incidents/{incident.id}").text
        assert 'data-chain="ok"' in clean
        assert "verified (5 events)" in clean

        engine = sa.create_engine(normalize_url(h.settings.store_url()))
        try:
            drop_append_only_triggers(engine)
            events = EventRow.__table__
            with engine.begin() as conn:
                conn.execute(
                    sa.update(events).where(events.c.seq == seqs[2]).values(actor="user:U66")
                )
        finally:
            engine.dispose()

        page = client.get(f"/incidents/{incident.id}").text
        assert f"BROKEN at event {seqs[2]}" in page
        assert '<div class="alert chain-alert" role="alert" id="chain-broken"' in page
        assert page.index('id="chain-broken"') < page.index('id="timeline"')
        assert 'data-chain="broken"' in page
        assert f'<tr id="ev-{seqs[2]}" data-seq="{seqs[2]}" data-kind="note" class="bad"' in page
        md = client.get(f"/incidents/{incident.id}/timeline.md").text
        assert f"- **Audit chain:** BROKEN at event {seqs[2]}" in md
        assert (
            client.get(f"/incidents/{incident.id}/timeline.json").json()["chain"]["first_bad_seq"]
            == seqs[2]
        )


# --------------------------------------------------------------------------- offline


def test_irbot_timeline_html_renders_offline(site: Site) -> None:
    """`irbot timeline INC --format html` prints the page as one file: the same rows in
    the same order, CSS and the local-time script inline, the note escaped, no links to
    the server's exports; the Slack link uses IRBOT_SLACK_WORKSPACE_URL. An unknown
    incident exits 2 saying so."""

    def timeline(incident: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [IRBOT, "timeline", incident, "--format", "html"],
            env={**os.environ, **site.env},
            cwd=site.harness.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = timeline(site.breakglass)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("<!doctype html>")
    rep = report_of(site, site.breakglass)
    rows = [(int(seq), kind) for seq, kind in ROW.findall(text)]
    assert rows == [(e.seq, e.kind) for e in rep.entries]
    assert "<style>" in text
    assert "time[datetime]" in text
    assert "/static/" not in text
    assert "timeline.md" not in text
    assert "<script>alert" not in text
    assert escape(XSS_NOTE) in text
    assert 'id="breakglass"' in text
    assert f"{WORKSPACE}/archives/C0INCIDENTS/" in text
    assert re.findall(r"<script[^>]*>", text) == ["<script>"]
    bad = timeline("INC-999")
    assert bad.returncode == 2
    assert "no incident 'INC-999'" in bad.stderr


def test_render_standalone_matches_served_rows(site: Site) -> None:
    """render.incident_page lists the same rows served and standalone; only the served
    one links the stylesheet, the script and the exports."""
    rep = report_of(site, site.breakglass)
    served = render.incident_page(rep)
    alone = render.incident_page(rep, standalone=True)
    assert ROW.findall(served) == ROW.findall(alone) != []
    assert '<link rel="stylesheet" href="/static/irbot.css">' in served
    assert "/static/" not in alone
