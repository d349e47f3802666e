"""Shared by the timeline page tests (HTTP and browser): a real installation with real
incidents made by running a playbook through the engine, and ``irbot serve``'s app
under uvicorn on a free port.

The incidents (built once per module, on SQLite):

* ``breakglass`` — opened by a PagerDuty trigger (so the page links the PagerDuty
  incident), has a Slack thread; U01's own approval is refused, U09 breaks glass with a
  reason; a note containing ``<script>`` is added afterwards.
* ``approved`` — two ordinary approvals (U02, U03); the run succeeds.
* ``rejected`` — an input that is an HTML tag ends up in the title; U03 rejects with a
  reason that is HTML too.
* 60 bulk incidents opened directly in the store (the list's pagination and filters):
  ``drill 00`` … ``drill 59``; ``needle`` in the title of 5; 7 resolved and 4 closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.core import inputs as input_rules
from bot.core import library
from bot.core.config import load_config
from bot.engine import client
from bot.service import Service
from bot.settings import load_settings
from bot.store import TimelineStore
from bot.web.app import create_app
from bot.web.settings import load_server_settings
from tests.engine_support import GATED, Harness
from tests.fake_slack import BOT_TOKEN, FakeSlack
from tests.serving import serve_app
from tests.test_slack_app_support import SIGNING_SECRET, teach

WEB_TOKEN = "web-token-for-tests-0123456789abcdef"
WORKSPACE = "https://acme.slack.com"
THREAD_TS = "1700000000.123456"
PAGERDUTY_URL = "https://acme.pagerduty.com/incidents/Q1PAGEDEMO"
XSS_NOTE = "<script>alert('irbot-xss')</script> rolled back & verified"
XSS_INPUT = "<img src=x onerror=alert(1)>"
XSS_REASON = "<b>not now</b>: wait for the change freeze"
BREAKGLASS_REASON = "prod is down & nobody else is awake"
BULK = 60


@dataclass
class Site:
    """The installation, its incidents, and how to reach them."""

    harness: Harness
    env: dict[str, str]
    breakglass: str
    approved: str
    rejected: str
    runs: dict[str, str] = field(default_factory=dict)
    needles: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    url: str = ""

    def store(self) -> TimelineStore:
        store = TimelineStore(self.harness.settings.store_url())
        store.migrate()
        return store


def server_env(h: Harness, fake: FakeSlack, **extra: str) -> dict[str, str]:
    """The variables `irbot serve` reads, pointing at the fake Slack."""
    return {
        **h.env,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "IRBOT_WEB_TOKEN": WEB_TOKEN,
        "IRBOT_SLACK_WORKSPACE_URL": WORKSPACE,
        **extra,
    }


@contextmanager
def serving(env: Mapping[str, str]) -> Iterator[str]:
    """``create_app`` (serving only, no engine worker) under uvicorn in its own thread
    and event loop, as in production; yields the base URL once it answers."""
    clean = {k: v for k, v in env.items() if v}
    app = create_app(load_settings(clean), load_server_settings(clean), worker=False)
    with serve_app(app, "uvicorn-pages") as url:
        yield url


def submit(h: Harness, user: str, trigger: Mapping[str, Any] | None = None, **raw: Any) -> str:
    """Start ``gated`` as ``user`` (with a webhook's ``trigger``, as the webhooks do)."""
    lib = library.read([h.root / "playbooks"])
    loaded = lib.get("gated")
    done = client.submit(
        h.settings,
        h.store,
        loaded,
        input_rules.resolve(raw, loaded.playbook),
        requester=user,
        library=lib.loaded(),
        config=load_config(h.settings.config_path),
        trigger=trigger,
        authorized=trigger is not None,
    )
    return done.run_id


def build_site(root: Path, mp: pytest.MonkeyPatch) -> Site:
    """Run the playbook through the real engine to make the incidents described above."""
    h = Harness(root, None, mp)
    h.add_playbook(GATED)

    async def play() -> dict[str, str]:
        await h.start()
        try:
            trigger = {"source": "pagerduty", "incident_id": "Q1PAGEDEMO"}
            trigger["html_url"] = PAGERDUTY_URL
            first = submit(h, "U01", trigger, target="db-7")
            second = submit(h, "U02", target="cache-1")
            third = submit(h, "U02", target=XSS_INPUT)
            for run_id in (first, second, third):
                await h.wait_for(run_id, {"waiting"})
            await h.vote(first, "U01")  # refused: the requester
            await h.vote(first, "U09", breakglass=True, reason=BREAKGLASS_REASON)
            await h.vote(second, "U01")
            await h.vote(second, "U03")
            await h.vote(third, "U03", decision="reject", reason=XSS_REASON)
            for run_id in (first, second, third):
                await h.wait_for(run_id)
            return {"breakglass": first, "approved": second, "rejected": third}
        finally:
            h.stop()

    runs = asyncio.run(play())
    store = TimelineStore(h.settings.store_url())
    try:
        incidents = {name: store.get_run(run_id).incident_id for name, run_id in runs.items()}
        site = Site(h, dict(h.env), **incidents, runs=runs)
        store.set_incident_slack(site.breakglass, "C0INCIDENTS", THREAD_TS)
        Service(h.settings, store).note(site.breakglass, user="U02", text=XSS_NOTE)
        at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        for n in range(BULK):
            title = f"drill {n:02d}" + (" needle" if n % 12 == 5 else "")
            opened = store.open_incident(
                key=f"bulk-{n}", title=title, playbook="drill", at=at + timedelta(minutes=n)
            )
            if "needle" in title:
                site.needles.append(opened.id)
            if n < 7:
                store.set_incident_status(opened.id, "resolved", at + timedelta(hours=1))
                site.resolved.append(opened.id)
            elif n < 11:
                store.set_incident_status(opened.id, "closed", at + timedelta(hours=2))
                site.closed.append(opened.id)
    finally:
        store.close()
    return site


@contextmanager
def site_and_server(tmp: Path) -> Iterator[Site]:
    """A built site served by the app (for a module-scoped fixture)."""
    with pytest.MonkeyPatch.context() as mp, FakeSlack() as fake:
        teach(fake)
        site = build_site(tmp, mp)
        site.env = server_env(site.harness, fake)
        with serving(site.env) as url:
            site.url = url
            yield site
