"""The timeline pages in a real browser: headless Chromium (Debian's package) driven by
Playwright, against the real `irbot serve` process.

Log in through the form, filter the list, click into an incident, read the events in
order, see that a note containing ``<script>`` is text (no dialog, no script ran, no CSP
violation), see the viewer's local time next to UTC, and save screenshots (desktop and
phone) to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.engine_support import IRBOT
from tests.fake_slack import FakeSlack
from tests.pages_support import (
    BREAKGLASS_REASON,
    WEB_TOKEN,
    XSS_NOTE,
    Site,
    build_site,
    server_env,
)
from tests.serving import free_port, wait_ready
from tests.test_slack_app_support import teach

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKYO = timedelta(hours=9)


def _chromium() -> Path:
    """/usr/bin/chromium, installed from Debian's packages if it is missing and this
    process may (as .ci/run does); skip only when neither works."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            timeout=900,
            check=False,
        )
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (apt-get as root)")
    return CHROMIUM


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The incidents of tests/pages_support.py, served by `irbot serve --no-worker`."""
    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp, FakeSlack() as fake:
        teach(fake)
        built = build_site(root, mp)
        built.env = server_env(built.harness, fake)
        port = free_port()
        log = root / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [IRBOT, "serve", "--port", str(port), "--no-worker"],
                env={**os.environ, **built.env},
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        built.url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(
                f"{built.url}/readyz",
                alive=lambda: proc.poll() is None,
                timeout=90,
                why=log.read_text,
            )
            yield built
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Watch:
    """What a page did that it must not: dialogs (alert from a planted script), CSP
    violations, page errors."""

    def __init__(self, page: Any) -> None:
        self.dialogs: list[str] = []
        self.violations: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.violations.append(message.text)

    def clean(self) -> bool:
        return not (self.dialogs or self.violations or self.errors)


def test_login_list_incident_in_order_and_script_note_as_text(site: Site, browser: Any) -> None:
    """The whole visit: wrong token refused on the form, right token logs in, the list
    filters, the incident opens by a click, its events are in chain order, the
    ``<script>`` note reads as text and nothing ran, local times are filled in (Tokyo),
    break-glass is flagged; a screenshot is saved; logging out ends the session."""
    context = browser.new_context(
        base_url=site.url, timezone_id="Asia/Tokyo", locale="en-GB", viewport=None
    )
    page = context.new_page()
    watch = Watch(page)
    try:
        first = page.goto("/incidents")
        assert first is not None
        assert first.status == 401
        page.fill("#token", "definitely-not-the-token")
        page.click("button[type=submit]")
        assert "That is not the access token" in page.inner_text("#login-message")
        page.fill("#token", WEB_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url("**/incidents")
        assert page.inner_text("h1") == "Incidents"
        assert page.locator("tr[data-incident]").count() == 50
        cookies = context.cookies()
        assert [c["name"] for c in cookies] == ["irbot_session"]
        assert cookies[0]["httpOnly"] is True
        assert cookies[0]["sameSite"] == "Strict"
        assert WEB_TOKEN not in cookies[0]["value"]

        page.fill("input[name=q]", "target=db-7")
        page.click("form.filters button")
        page.wait_for_url("**/incidents?*q=target*")
        assert page.locator("tr[data-incident]").count() == 1
        page.click(f"a[href='/incidents/{site.breakglass}']")
        page.wait_for_url(f"**/incidents/{site.breakglass}")

        store = site.store()
        try:
            events = store.events(incident_id=site.breakglass)
        finally:
            store.close()
        rows = page.locator("table.events tbody tr")
        seqs = [int(s) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]
        kinds = rows.evaluate_all("rs => rs.map(r => r.dataset.kind)")
        assert seqs == [e.seq for e in events]
        assert seqs == sorted(seqs)
        assert kinds == [e.kind for e in events]

        note = page.locator("tr[data-kind='note'] .detail")
        assert note.inner_text() == XSS_NOTE
        assert page.locator("script").count() == 1
        assert page.locator("script").get_attribute("src") == "/static/localtime.js"
        assert page.locator("tr[data-kind='note'] script").count() == 0

        assert page.locator("#breakglass").is_visible()
        assert "BREAK-GLASS USED" in page.inner_text("#breakglass")
        assert BREAKGLASS_REASON in page.inner_text("#approvals")
        assert page.inner_text("#chain").startswith("verified (")

        # localtime.js filled in the viewer's time next to every UTC <time>.
        times = page.locator("time[datetime]").count()
        assert page.get_attribute("html", "data-local-times") == str(times)
        assert page.locator(".local").count() == times
        opened = events[0].at.astimezone(UTC) + TOKYO
        first_row = page.locator(f"#ev-{events[0].seq}")
        assert opened.strftime("%H:%M:%S") in first_row.locator(".local").inner_text()
        assert first_row.locator("time").inner_text() == (
            events[0].at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        )

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "timeline-incident.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        page.click("header form button")
        page.wait_for_url("**/login")
        again = page.goto(f"/incidents/{site.breakglass}")
        assert again is not None
        assert again.status == 401
        assert watch.clean(), (watch.dialogs, watch.violations, watch.errors)
    finally:
        context.close()


def test_incident_page_fits_a_phone(site: Site, browser: Any) -> None:
    """On a 390 px wide phone the rows become cards and nothing scrolls sideways; a
    screenshot of it is saved."""
    context = browser.new_context(
        base_url=site.url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        extra_http_headers={"Authorization": f"Bearer {WEB_TOKEN}"},
    )
    page = context.new_page()
    watch = Watch(page)
    try:
        answer = page.goto(f"/incidents/{site.breakglass}")
        assert answer is not None
        assert answer.status == 200
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        display = page.locator("table.events tbody tr").first.evaluate(
            "r => getComputedStyle(r).display"
        )
        assert display == "block"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "timeline-phone.png"), full_page=True)
        page.goto("/incidents")
        page.screenshot(path=str(ARTIFACTS / "incidents-phone.png"))
        assert watch.clean(), (watch.dialogs, watch.violations, watch.errors)
    finally:
        context.close()
