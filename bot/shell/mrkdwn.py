"""Slack's mrkdwn as a terminal shows it: markers become styles, entities plain text.

Pure. ``*bold*`` and ```code``` become styled segments (plain text keeps the
backticks); ``<@U01>`` reads ``@U01``, ``<#C01|ops>`` ``#ops``, ``<!date^…|fallback>``
a UTC time, ``<url|label>`` ``label (url)``; ``&lt;`` ``&gt;`` ``&amp;`` are undone
last, so text that irbot escaped (a person's note, a playbook's message) is shown as
typed and can never become markup.
Emoji short codes stay as written; :func:`emoji` turns the ones irbot uses into
characters for terminals that show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_TOKEN = re.compile(
    r"<(?P<angle>[^<>\n]+)>"
    r"|`(?P<code>[^`\n]+)`"
    r"|(?<![\w*])\*(?P<bold>\S(?:[^*\n]*?\S)?)\*(?![\w*])"
)

_EMOJI = {
    "rotating_light": "🚨",
    "lock": "🔒",
    "closed_lock_with_key": "🔐",
    "clipboard": "📋",
    "white_check_mark": "✅",
    "ballot_box_with_check": "☑️",
    "x": "❌",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "warning": "⚠️",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "octagonal_sign": "🛑",
    "memo": "📝",
    "rocket": "🚀",
    "arrow_forward": "▶️",
    "double_vertical_bar": "⏸️",
    "clock1": "🕐",
    "sunny": "☀️",
    "information_source": "\u2139\ufe0f",
}
_SHORT_CODE = re.compile(r":([a-z0-9_+-]+):")


@dataclass(frozen=True)
class Segment:
    text: str
    style: str | None = None
    """A rich style name (``bold``, ``cyan``…), or None for plain text."""
    code: bool = False
    """Inline code: plain text keeps its backticks, so a command to copy stands out."""


def unescape(text: str) -> str:
    """Undo Slack's three entities (``&amp;`` last, so ``&amp;lt;`` stays ``&lt;``)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def segments(mrkdwn: str, style: str | None = None) -> list[Segment]:
    """``mrkdwn`` cut into plain and styled pieces (``style`` applies to all of them)."""
    found: list[Segment] = []
    at = 0
    for match in _TOKEN.finditer(mrkdwn):
        if match.start() > at:
            found.append(Segment(unescape(mrkdwn[at : match.start()]), style))
        if match.group("code") is not None:
            found.append(Segment(unescape(match.group("code")), _add(style, "cyan"), code=True))
        elif match.group("bold") is not None:
            found += segments(match.group("bold"), _add(style, "bold"))
        else:
            found.append(_angle(match.group("angle"), style))
        at = match.end()
    if at < len(mrkdwn):
        found.append(Segment(unescape(mrkdwn[at:]), style))
    return [s for s in found if s.text]


def plain(mrkdwn: str) -> str:
    """``mrkdwn`` as plain text: bold markers and links' brackets removed, code kept
    between backticks."""
    return "".join(f"`{s.text}`" if s.code else s.text for s in segments(mrkdwn))


def emoji(text: str) -> str:
    """Known short codes (``:rocket:``) as the characters Slack would draw."""
    return _SHORT_CODE.sub(lambda m: _EMOJI.get(m.group(1), m.group(0)), text)


def _add(style: str | None, more: str) -> str:
    return more if style is None else f"{style} {more}"


def _angle(inner: str, style: str | None) -> Segment:
    """``<…>``: a mention, a channel, a special (date, @here), or a link."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return Segment("@" + unescape(label or target[1:]), _add(style, "bold"))
    if target.startswith("#"):
        return Segment("#" + unescape(label or target[1:]), _add(style, "bold"))
    if target.startswith("!date^"):
        return Segment(_date(target, label), style)
    if target.startswith("!"):
        return Segment("@" + unescape(label or target[1:].split("^")[0]), _add(style, "bold"))
    url = unescape(target)
    return Segment(f"{unescape(label)} ({url})" if label else url, _add(style, "underline"))


def _date(target: str, fallback: str) -> str:
    """``<!date^1714564800^{…}|2024-05-01T12:00:00+00:00>`` -> ``2024-05-01 12:00 UTC``."""
    stamp = target.split("^")[1] if target.count("^") >= 1 else ""
    try:
        when = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        return unescape(fallback)
    return when.strftime("%Y-%m-%d %H:%M UTC")
