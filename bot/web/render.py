"""HTML of the timeline pages: server-rendered Jinja2, autoescaped, no front-end build.

Every page is a function of plain values (a :class:`~bot.core.report.Report`, a list of
incidents) so ``irbot timeline --format html`` renders offline exactly what
``GET /incidents/{id}`` serves. Autoescape is on and undefined names fail loudly
(``StrictUndefined``): whatever a note, a title or an error message holds is shown as
text. The served pages link one stylesheet and one script from ``/static`` (the
Content-Security-Policy allows nothing inline); the offline export (``standalone``)
inlines both so the file opens on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from bot.core import report as reports
from bot.core.report import Report
from bot.store.records import INCIDENT_STATUSES, Incident

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _utc(at: datetime) -> str:
    """``2026-11-28 17:03:20``: isoformat, several times faster than strftime (a 5,000
    event page formats 5,000 times)."""
    return at.astimezone(UTC).isoformat(sep=" ", timespec="seconds")[:19]


def _iso(at: datetime) -> str:
    """HTML's ``datetime`` attribute takes at most three fractional digits."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def _when(at: datetime | None) -> Markup:
    """A time as the record has it (UTC) in a ``<time>`` element; localtime.js adds
    the viewer's local time. Only digits and separators go in, so nothing to escape."""
    if at is None:
        return Markup("—")
    return Markup(f'<time datetime="{_iso(at)}">{_utc(at)} UTC</time>')  # noqa: S704


def _millis(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1000:
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    return _seconds(value / 1000)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 120:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _payload(payload: Mapping[str, Any]) -> Markup:
    """An event's payload as compact JSON for a ``<pre>`` (the C encoder: no indent).

    Escaped for element content only (``&``, ``<``, ``>``): quotes are harmless there,
    and leaving them halves the size of a page of JSON."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Markup(text)  # noqa: S704 - escaped above; used only between tags


def _is_web_url(value: object) -> bool:
    """Only http(s) URLs become links (a ``javascript:`` URL from a payload never does)."""
    return isinstance(value, str) and value.startswith(("https://", "http://"))


@cache
def environment() -> Environment:
    """The one Jinja environment of the pages (templates in ``bot/web/templates``)."""
    env = Environment(
        loader=PackageLoader("bot.web", "templates"),
        autoescape=select_autoescape(("html",), default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(when=_when, millis=_millis, seconds=_seconds, payload=_payload)
    env.tests["web_url"] = _is_web_url
    return env


@cache
def _static(name: str) -> Markup:
    """A static file's text, trusted (it ships with irbot), for the standalone export."""
    text = resources.files("bot.web").joinpath("static", name).read_text(encoding="utf-8")
    if name.endswith(".js"):
        text = text.replace("</", "<\\/")  # cannot close the <script> it is inlined into
    return Markup(text)  # noqa: S704 - irbot's own file, not user input


def _page(template: str, *, base: str, signed_in: bool, **values: Any) -> str:
    return (
        environment()
        .get_template(template)
        .render(base=base, signed_in=signed_in, standalone=False, **values)
    )


def incident_page(report: Report, *, base: str = "", standalone: bool = False) -> str:
    """``GET /incidents/{id}``: the whole timeline, approvals, runs and chain state.

    ``standalone``: a file that opens by itself (CSS and the local-time script inline,
    no links to the server's exports), for ``irbot timeline --format html``.
    """
    values: dict[str, Any] = {
        "r": report,
        "counts": reports.summarize(report.entries),
        "bad_seq": None if report.chain.ok else report.chain.first_bad_seq,
        "base": base,
        "signed_in": not standalone,
        "standalone": standalone,
    }
    if standalone:
        values |= {
            "inline_css": _static("irbot.css"),
            "inline_js": _static("localtime.js"),
            "exported_at": _utc(datetime.now(UTC)),
        }
    return environment().get_template("incident.html").render(**values)


def list_url(base: str, *, state: str | None, q: str | None, page: int) -> str:
    """The list page's URL with its filters (empty ones left out)."""
    query = {k: v for k, v in (("state", state), ("q", q)) if v}
    if page > 1:
        query["page"] = str(page)
    return f"{base}/incidents" + (f"?{urlencode(query)}" if query else "")


def incident_list(
    incidents: Sequence[Incident],
    *,
    state: str | None,
    q: str | None,
    page: int,
    has_next: bool,
    q_max: int,
    base: str = "",
) -> str:
    """``GET /incidents``: one page of incidents, newest first, with the filter form."""
    return _page(
        "incidents.html",
        base=base,
        signed_in=True,
        incidents=incidents,
        states=INCIDENT_STATUSES,
        state=state or "",
        q=q or "",
        q_max=q_max,
        page=page,
        prev_url=list_url(base, state=state, q=q, page=page - 1) if page > 1 else None,
        next_url=list_url(base, state=state, q=q, page=page + 1) if has_next else None,
    )


def login_page(
    *,
    message: str | None = None,
    next_path: str = "/incidents",
    base: str = "",
    session_hours: int = 12,
) -> str:
    """``GET /login`` and the answer to a browser without a valid session."""
    return _page(
        "login.html",
        base=base,
        signed_in=False,
        message=message,
        next=next_path,
        session_hours=session_hours,
    )


def error_page(status: int, message: str, *, base: str = "", signed_in: bool = False) -> str:
    """A 4xx/5xx page that says what went wrong in one sentence."""
    return _page(
        "error.html",
        base=base,
        signed_in=signed_in,
        status=status,
        reason=_REASONS.get(status, "Error"),
        message=message,
    )
